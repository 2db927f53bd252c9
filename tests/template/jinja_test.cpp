// Unit tests of the Jinja interpreter. Expected strings follow jinja2 3.x semantics with the
// environment transformers uses (trim_blocks, lstrip_blocks, no trailing newline kept).
#include <gtest/gtest.h>

#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "template/jinja.h"

namespace fathom::jinja {
namespace {

std::string R(const std::string& tmpl, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object(),
              Options opt = {}) {
  Context ctx;
  for (auto it = vars.begin(); it != vars.end(); ++it) ctx[it.key()] = Value::from_json(it.value());
  return Template::parse(tmpl, opt).render(ctx);
}

std::string error_of(const std::string& tmpl, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object(),
                     Options opt = {}) {
  try {
    R(tmpl, vars, opt);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Jinja, TextAndVariables) {
  EXPECT_EQ(R("Hello {{ name }}!", {{"name", "W"}}), "Hello W!");
  EXPECT_EQ(R("{{ 'a' }}{{ \"b\" 'c' }}"), "abc");
  EXPECT_EQ(R("{{ 'a\\tb\\u00e9\\x41\\n' }}"), "a\tb\xC3\xA9" "A\n");
}

TEST(Jinja, TrimBlocksAndLstripBlocks) {
  EXPECT_EQ(R("{% if true %}\nyes\n{% endif %}\nafter"), "yes\nafter");
  EXPECT_EQ(R("  {% if true %}x{% endif %}"), "x");
  EXPECT_EQ(R("a\n    {% if true %}\n    b\n    {% endif %}\nc"), "a\n    b\nc");
  EXPECT_EQ(R("  {{ 'x' }}"), "  x");             // lstrip_blocks leaves {{ }} alone
  EXPECT_EQ(R("{{ 'x' }}\ny"), "x\ny");            // trim_blocks leaves }} alone
  EXPECT_EQ(R("a {% if true %}b{% endif %}"), "a b");  // not at line start: kept
  EXPECT_EQ(R("a\n  {# c #}\nb"), "a\nb");         // comments are lstripped and trimmed too
  EXPECT_EQ(R("a{# c #}b"), "ab");
}

TEST(Jinja, WhitespaceControlSigns) {
  EXPECT_EQ(R("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(R("{% for i in [1,2,3] -%}\n  {{ i }}\n{%- endfor %}"), "123");
  EXPECT_EQ(R("  {%+ if true %}x{% endif %}"), "  x");    // '+' disables lstrip_blocks
  EXPECT_EQ(R("{% if true +%}\nx{% endif %}"), "\nx");    // '+' disables trim_blocks
  EXPECT_EQ(R("a\n\n{#- c -#}\n\nb"), "ab");
}

TEST(Jinja, TrailingNewline) {
  EXPECT_EQ(R("x\n"), "x");
  EXPECT_EQ(R("x\n\n"), "x\n");
  EXPECT_EQ(R("a\r\nb"), "a\nb");
}

TEST(Jinja, LoopVariables) {
  EXPECT_EQ(R("{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}"
              "{{ loop.length }}{{ loop.revindex }}|{% endfor %}"),
            "10TrueFalse33|21FalseFalse32|32FalseTrue31|");
  EXPECT_EQ(R("{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}"), "-2,1-3,2-,");
  EXPECT_EQ(R("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{% for x in range(10) if x is odd %}{{ x }}{{ ',' if not loop.last }}{% endfor %}"), "1,3,5,7,9");
  EXPECT_EQ(R("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"a", 1}, {"b", 2}}}}), "a=1;b=2;");
  EXPECT_EQ(R("{% for k in d %}{{ k }}{% endfor %}", {{"d", {{"a", 1}, {"b", 2}}}}), "ab");
  EXPECT_EQ(R("{% for c in 'hé' %}[{{ c }}]{% endfor %}"), "[h][\xC3\xA9]");
  EXPECT_EQ(R("{% for x in [1,2] %}{% for y in [3] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}"), "1112");
  EXPECT_EQ(R("{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "aba");
}

TEST(Jinja, BreakContinue) {
  EXPECT_EQ(R("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}"
              "{{ i }}{% endfor %}"),
            "013");
}

TEST(Jinja, ScopingAndNamespaces) {
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1,2] %}{% set x = i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(R("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}"), "2");
  EXPECT_EQ(R("{% set ns = namespace(x=1) %}{% for i in [1,2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"), "4");
  EXPECT_EQ(R("{% set ns = namespace(a='') %}{% set ns.b = 5 %}{{ ns.b }}{{ ns.a }}"), "5");
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(R("{% set s %}a{{ 1 + 1 }}b{% endset %}[{{ s }}]"), "[a2b]");
  EXPECT_EQ(R("{% set s | upper %}ab{% endset %}{{ s }}"), "AB");
  EXPECT_EQ(R("{% with a = 1 %}{{ a }}{% endwith %}[{{ a }}]"), "1[]");
  EXPECT_NE(error_of("{% set x = 1 %}{% set x.y = 2 %}").find("non-namespace"), std::string::npos);
}

TEST(Jinja, Macros) {
  EXPECT_EQ(R("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
              "{{ greet('Bob') }} {{ greet('Al', punct='?') }}"),
            "Hi Bob! Hi Al?");
  EXPECT_EQ(R("{% macro m(x) %}[{{ x }}]{% endmacro %}{{ m() }}{{ m(1) | length }}"), "[]3");
  EXPECT_EQ(R("{% set g = 'G' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}"), "G");
}

TEST(Jinja, Arithmetic) {
  EXPECT_EQ(R("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|"
              "{{ 2 ** 10 }}|{{ 1.0 }}|{{ 1.5e-5 }}|{{ 10 / 5 }}"),
            "7|9|3|-4|1|2|3.5|1024|1.0|1.5e-05|2.0");
  EXPECT_EQ(R("{{ 3 * 1.0 }}|{{ 10 // 3.0 }}|{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 123456789012345.6 }}|{{ -0.5 }}"),
            "3.0|3.0|1e+20|0.30000000000000004|1e+16|123456789012345.6|-0.5");
  EXPECT_EQ(R("{{ true + 1 }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}|{{ -3 | abs }}"), "2|abab|[1, 2]|3");
  EXPECT_NE(error_of("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
  EXPECT_NE(error_of("{{ 9223372036854775807 + 1 }}").find("overflow"), std::string::npos);
}

TEST(Jinja, ConcatConditionalLogic) {
  EXPECT_EQ(R("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'y' if 1 > 2 else 'n' }}|{{ 'x' if false }}"), "a1NoneTrue|n|");
  EXPECT_EQ(R("{{ 1 < 2 < 3 }}{{ 'b' in 'abc' }}{{ 3 not in [1,2] }}{{ not true }}{{ 1 == 1.0 }}{{ none or 'd' }}"
              "{{ 0 and 1 }}{{ 'k' in {'k': 1} }}"),
            "TrueTrueTrueFalseTrued0True");
  EXPECT_EQ(R("{{ not x is defined }}"), "True");  // not binds looser than is
}

// {{ a + b }} writes a sum of strings operand by operand; it must render and fail exactly as the
// operator does, whatever mix of operand types the sum has.
TEST(Jinja, OutputOfASumActsAsTheOperator) {
  const nlohmann::ordered_json v = {{"s", "S"}, {"n", 2}, {"l", {1}}};
  for (const char* sum : {"'<' + s + '>'", "'a' + s + 'b' + s", "1 + n + 3", "l + [2] + l", "(s + 'x') + ('y' + s)",
                          "s + (n | string)", "true + n"}) {
    const std::string expr = sum;
    EXPECT_EQ(R("{{ " + expr + " }}", v), R("{% set x = " + expr + " %}{{ x }}", v)) << sum;
  }
  for (const char* bad : {"'a' + s + n", "n + s", "'a' + 'b' + missing", "l + s + 'c'", "'a' + s + none + 'b'"}) {
    const std::string expr = bad;
    const std::string e = error_of("\n{{ " + expr + " }}", v);
    EXPECT_EQ(e, error_of("\n{% set x = " + expr + " %}{{ x }}", v)) << bad;
    EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  }
  Options small;
  small.max_output_bytes = 1000;
  EXPECT_NE(error_of("{{ s * 600 + s * 600 }}", v, small).find("limit"), std::string::npos);
}

TEST(Jinja, PythonReprAndTruthiness) {
  EXPECT_EQ(R("{{ ['a', 1, none, true, 1.5, {'k': \"it's\"}] }}"), "['a', 1, None, True, 1.5, {'k': \"it's\"}]");
  EXPECT_EQ(R("{{ ['a\\nb'] }}"), "['a\\nb']");
  EXPECT_EQ(R("{% if [] %}a{% endif %}{% if {} %}b{% endif %}{% if '' %}c{% endif %}{% if 0.0 %}d{% endif %}"
              "{% if [0] %}e{% endif %}{% if ' ' %}f{% endif %}"),
            "ef");
}

TEST(Jinja, SubscriptsAndSlices) {
  EXPECT_EQ(R("{{ [1,2,3,4][::-1] }}|{{ 'hello'[1:3] }}|{{ [1,2,3][-1] }}|{{ 'héllo'[::-1] }}|{{ [1,2,3,4,5][1::2] }}"),
            "[4, 3, 2, 1]|el|3|oll\xC3\xA9h|[2, 4]");
  EXPECT_EQ(R("{{ {'a': {'b': [10, 20]}}.a.b.1 }}|{{ m[1:] | length }}|{{ [1][5] }}", {{"m", {1, 2, 3}}}), "20|2|");
}

TEST(Jinja, StringMethods) {
  EXPECT_EQ(R("{{ ' a b '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split() }}|"
              "{{ 'x</think>y'.split('</think>')[-1] }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x','c')) }}|"
              "{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}|{{ 'aXa'.replace('a','b') }}|{{ 'abc'.find('c') }}|"
              "{{ 'hello world'.title() }}|{{ '{} and {}'.format(1, 'x') }}|{{ 'a-b-c'.rsplit('-', 1) }}|"
              "{{ 'xxhixx'.lstrip('x') }}{{ 'xxhixx'.rstrip('x') }}"),
            "a b|['a', 'b', '', 'c']|['a', 'b', 'c']|y|True|True|HELLOhello|bXb|2|Hello World|1 and x|['a-b', 'c']|"
            "hixxxxhi");
  EXPECT_EQ(R("{{ 'ÉCOLE'.lower() }}"), "\xC3\xA9" "cole");
}

TEST(Jinja, DictMethods) {
  nlohmann::ordered_json d = {{"d", {{"a", 1}, {"b", 2}}}};
  EXPECT_EQ(R("{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('a') }}|{{ d.get('z', 'no') }}|{{ d.get('z') }}|"
              "{{ d['a'] }}|{{ d.a }}",
              d),
            "['a', 'b']|[1, 2]|1|no|None|1|1");
}

TEST(Jinja, Tests) {
  EXPECT_EQ(R("{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}"
              "{{ 1.0 is float }}{{ 1 is integer }}{{ true is boolean }}{{ {} is mapping }}{{ [] is iterable }}"
              "{{ 'a' is sequence }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 6 is divisibleby 3 }}"
              "{{ 6 is divisibleby(4) }}{{ 'a' is equalto 'a' }}{{ 1 is eq 2 }}{{ 3 is odd }}{{ 1 is not none }}",
              {{"x", 1}}),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalseTrueTrueFalseTrueFalseTrueTrue");
  EXPECT_EQ(R("{{ true is integer }}{{ true is number }}{{ 'a' is mapping }}{{ 'a' is iterable }}{{ 1 is iterable }}"),
            "FalseTrueFalseTrueFalse");
  EXPECT_NE(error_of("{{ 1 is frobbed }}").find("unknown test 'frobbed'"), std::string::npos);
}

TEST(Jinja, Filters) {
  EXPECT_EQ(R("{{ '  x  ' | trim }}|{{ [1,2] | length }}|{{ 'abc' | count }}|{{ 'hello WORLD' | capitalize }}|"
              "{{ 'hello world-foo' | title }}|{{ u | default('d') }}|{{ '' | default('d', true) }}|"
              "{{ [1,2,3] | join('-') }}|{{ [1,2,3] | first }}{{ [1,2,3] | last }}|{{ 'ab' | list }}|{{ 1 | string }}|"
              "{{ '42' | int + 1 }}|{{ '3.9' | int }}|{{ 'x' | int(7) }}|{{ '2.5' | float }}|"
              "{{ 'aaa' | replace('a', 'b', 2) }}|{{ 2.5 | round }}|{{ 3.14159 | round(2) }}|"
              "{{ 2.1 | round(method='ceil') }}|{{ 'AbC' | upper }}{{ 'AbC' | lower }}|{{ 'x' | safe }}|{{ 'a' | d('b') }}"),
            "x|2|3|Hello world|Hello World-Foo|d|d|1-2-3|13|['a', 'b']|1|43|3|7|2.5|bba|2.0|3.14|3.0|ABCabc|x|a");
}

TEST(Jinja, SequenceFilters) {
  nlohmann::ordered_json v = {{"users",
                               {{{"name", "a"}, {"age", 3}, {"admin", true}},
                                {{"name", "b"}, {"age", 1}, {"admin", false}},
                                {{"name", "c"}, {"age", 2}}}}};
  EXPECT_EQ(R("{{ users | selectattr('admin') | map(attribute='name') | list }}|"
              "{{ users | rejectattr('admin') | map(attribute='name') | join(',') }}|"
              "{{ users | selectattr('age', 'gt', 1) | map(attribute='name') | list }}|"
              "{{ [1,2,3,4] | select('even') | list }}|{{ [1,2,3,4] | reject('even') | list }}|"
              "{{ ['a','b'] | map('upper') | list }}|{{ users | sort(attribute='age') | map(attribute='name') | join }}|"
              "{{ [3,1,2] | sort(reverse=true) }}|{{ ['b','A','a'] | unique | list }}|"
              "{% for k, v in {'b': 1, 'a': 2} | dictsort %}{{ k }}{{ v }}{% endfor %}|{{ [1,2,3] | reverse | list }}|"
              "{% for k, v in {'a': 1} | items %}{{ k }}{{ v }}{% endfor %}|{{ users | map(attribute='age') | sum }}|"
              "{{ users | selectattr('name', 'equalto', 'b') | list | length }}",
              v),
            "['a']|b,c|['a', 'c']|[2, 4]|[1, 3]|['A', 'B']|bca|[3, 2, 1]|['b', 'A']|a2b1|[3, 2, 1]|a1|6|1");
}

TEST(Jinja, IndentAndToJson) {
  EXPECT_EQ(R("{{ 'a\\nb\\n\\nc' | indent(2) }}"), "a\n  b\n\n  c");
  EXPECT_EQ(R("{{ 'a\\nb' | indent(2, true) }}"), "  a\n  b");
  EXPECT_EQ(R("{{ {'a': [1, 2.5, none, true], 'b': '\xC3\xA9\"\\n'} | tojson }}"),
            "{\"a\": [1, 2.5, null, true], \"b\": \"\xC3\xA9\\\"\\n\"}");
  EXPECT_EQ(R("{{ {'a': [1], 'b': {}} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"), "{\"a\": 2, \"b\": 1}");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2} | tojson(separators=(',', ':')) }}"), "{\"b\":1,\"a\":2}");
  EXPECT_EQ(R("{{ '\xC3\xA9' | tojson(ensure_ascii=true) }}"), "\"\\u00e9\"");
  EXPECT_EQ(R("{{ '<&>' | tojson }}"), "\"<&>\"");  // transformers' tojson does not HTML-escape
}

TEST(Jinja, UndefinedSemantics) {
  nlohmann::ordered_json d = {{"d", {{"a", 1}}}};
  EXPECT_EQ(R("{{ u }}|{{ u is defined }}|{{ u | length }}|{% for x in u %}x{% endfor %}|{{ d.missing }}|"
              "{{ d.missing is defined }}|{{ u == u }}|{{ 'a' in u }}",
              d),
            "|False|0|||False|True|False");
  EXPECT_NE(error_of("{{ u.x }}").find("'u' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ d.missing.x }}", d).find("has no attribute 'missing'"), std::string::npos);
  EXPECT_NE(error_of("{{ u + 1 }}").find("'u' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ nofunc() }}").find("'nofunc' is undefined"), std::string::npos);
}

TEST(Jinja, RawFilterGenerationBlocks) {
  EXPECT_EQ(R("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
  EXPECT_EQ(R("{% filter upper %}ab{{ 'c' }}{% endfilter %}"), "ABC");
  EXPECT_EQ(R("{% generation %}x{% endgeneration %}"), "x");
  EXPECT_EQ(R("{{ strftime_now('%Y') | length }}"), "4");
  EXPECT_EQ(R("{{ dict(a=1).a }}{{ range(2, 8, 3) | list }}"), "1[2, 5]");
}

TEST(Jinja, ErrorsNameConstructAndLine) {
  EXPECT_EQ(error_of("{{ raise_exception('bad role') }}"), "bad role");
  std::string e = error_of("a\nb\n{{ x | nope }}");
  EXPECT_NE(e.find("unknown filter 'nope'"), std::string::npos) << e;
  EXPECT_NE(e.find("line 3"), std::string::npos) << e;
  e = error_of("{% if true %}\nabc");
  EXPECT_NE(e.find("unclosed 'if'"), std::string::npos) << e;
  EXPECT_NE(e.find("line 1"), std::string::npos) << e;
  e = error_of("x\n{% for a in b %}{% endif %}");
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(error_of("{% include 'x' %}").find("unsupported tag 'include'"), std::string::npos);
  EXPECT_NE(error_of("{% endfor %}").find("unexpected 'endfor'"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 + }}").find("syntax error at line 1"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' + none }}").find("can only concatenate str"), std::string::npos);
  EXPECT_NE(error_of("{{ 'abc").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("{% break %}").find("outside of a loop"), std::string::npos);
  EXPECT_NE(error_of("{{ [1].append(2) }}").find("not allowed"), std::string::npos);
}

TEST(Jinja, LimitsStopHostileTemplates) {
  std::string e = error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}");
  EXPECT_NE(e.find("nesting"), std::string::npos) << e;
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "{% if true %}";
  EXPECT_NE(error_of(deep).find("nesting"), std::string::npos);
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}").find("nested deeper"), std::string::npos);
  Options small;
  small.max_steps = 100000;
  EXPECT_NE(error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {}, small)
                .find("steps"),
            std::string::npos);
  EXPECT_NE(error_of("{{ range(1000000) | length }}").find("Range too big"), std::string::npos);
  small.max_output_bytes = 1000;
  EXPECT_NE(error_of("{% for i in range(1000) %}xx{% endfor %}", {}, small).find("limit"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' * 1000000000000 }}").find("limit"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(l=[]) %}{% for i in range(500) %}{% set ns.l = [ns.l] %}{% endfor %}")
                .find("nested deeper"),
            std::string::npos);
}

TEST(Jinja, RenderIsThreadSafe) {
  auto t = Template::parse("{% for m in messages %}{{ m.role | upper }}:{{ m.content }};{% endfor %}{{ n }}");
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      Context ctx;
      ctx["messages"] = Value::from_json(nlohmann::json::parse(R"([{"role":"user","content":"x"}])"));
      ctx["n"] = Value::integer(i);
      for (int k = 0; k < 200; ++k) results[size_t(i)] = t.render(ctx);
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(results[size_t(i)], "USER:x;" + std::to_string(i));
}

}  // namespace
}  // namespace fathom::jinja
