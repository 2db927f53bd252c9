#include "train/reward_cmd.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/error.h"

namespace fathom::train {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr size_t kStderrKeep = 500;  // bytes of stderr quoted in an error

// "; stderr: <its last bytes>" for an error message, or "" when it printed nothing there.
std::string stderr_tail(const std::string& err) {
  std::string t = err.size() > kStderrKeep ? "..." + err.substr(err.size() - kStderrKeep) : err;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  return t.empty() ? std::string() : "; stderr: " + t;
}

// SIGPIPE blocked in this thread while we write, so a program that stops reading gives EPIPE
// instead of killing fathom. A SIGPIPE that our writes left pending is consumed before the old
// mask comes back; one that was pending before is left alone.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlock() {
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) continue;
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
};

// The running program and our ends of its pipes. Whatever way we leave (error, timeout,
// exception), the destructor closes the pipes, kills the process group and reaps the child.
struct Child {
  pid_t pid = -1;
  int in = -1, out = -1, err = -1;  // our ends: its stdin (write), stdout and stderr (read)
  bool reaped = false;

  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    close_fd(in);
    close_fd(out);
    close_fd(err);
    if (pid > 0 && !reaped) {
      kill_group();
      while (waitpid(pid, nullptr, 0) == -1 && errno == EINTR) continue;
    }
  }
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  // Only while the child is unreaped, so the group id cannot belong to anyone else.
  void kill_group() const {
    if (::kill(-pid, SIGKILL) == -1) ::kill(pid, SIGKILL);  // setpgid may not have happened yet
  }
};

// Starts `/bin/sh -c command` with its stdin/stdout/stderr on fresh pipes, leader of its own group.
void spawn(const std::string& command, Child& c) {
  int p[3][2];  // [stdin, stdout, stderr][read end, write end]
  for (int i = 0; i < 3; ++i) {
    if (pipe2(p[i], O_CLOEXEC) != 0) {
      int e = errno;
      for (int j = 0; j < i; ++j) ::close(p[j][0]), ::close(p[j][1]);
      fail("reward command `{}` cannot start: pipe: {}", command, std::strerror(e));
    }
  }
  const int child_end[3] = {p[0][0], p[1][1], p[2][1]};
  pid_t pid = fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec. Default signal state, whatever the parent's.
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    for (int i = 0; i < 3; ++i) {
      if (child_end[i] == i) fcntl(i, F_SETFD, 0);  // dup2 onto itself would keep CLOEXEC
      else if (dup2(child_end[i], i) == -1) _exit(127);
    }
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int fork_errno = errno;
  for (int i = 0; i < 3; ++i) ::close(child_end[i]);
  c.in = p[0][1];
  c.out = p[1][0];
  c.err = p[2][0];
  if (pid < 0) fail("reward command `{}` cannot start: fork: {}", command, std::strerror(fork_errno));
  c.pid = pid;
  setpgid(pid, pid);  // also here, so the group exists before we could need to kill it
  for (int fd : {c.in, c.out, c.err}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Milliseconds left until `deadline`, rounded up, for poll(); 0 once it has passed.
int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1000 * 1000));
}

// Reads what is there from a non-blocking fd into `buf`; closes it at end of file.
void drain(int& fd, std::string& buf) {
  char tmp[65536];
  for (;;) {
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n > 0) {
      buf.append(tmp, static_cast<size_t>(n));
      continue;
    }
    if (n == -1 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) Child::close_fd(fd);
    return;
  }
}

// One line of output as a reward: a number, or an object {"reward": number}.
bool parse_reward(std::string_view line, double& r) {
  if (line.front() == '{') {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("reward") || !j["reward"].is_number()) return false;
    r = j["reward"].get<double>();
    return true;
  }
  if (line.front() == '+') line.remove_prefix(1);  // from_chars takes no leading '+'
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), r);
  if (end != line.data() + line.size()) return false;
  // Out of range: strtod gives the overflow as +-inf (caught as non-finite) and underflow as ~0.
  if (ec == std::errc::result_out_of_range) r = std::strtod(std::string(line).c_str(), nullptr);
  return ec == std::errc() || ec == std::errc::result_out_of_range;
}

}  // namespace

std::vector<double> parse_reward_output(std::string_view out, size_t n, const std::string& command) {
  std::vector<double> rewards;
  rewards.reserve(std::min<size_t>(n, 1 << 20));
  size_t line_no = 0, pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    if (nl == std::string::npos) nl = out.size();
    std::string_view line = out.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    if (line.empty()) continue;
    if (rewards.size() == n)
      fail("reward command `{}` printed more than {} rewards for {} items (line {}: '{}')", command, n,
           n, line_no, line.substr(0, 80));
    double r = 0;
    if (!parse_reward(line, r))
      fail("reward command `{}` printed line {} '{}', which is neither a number nor {{\"reward\": number}}", command,
           line_no, line.substr(0, 80));
    if (!std::isfinite(r))
      fail("reward command `{}` printed a non-finite reward '{}' on line {}", command, line.substr(0, 80), line_no);
    rewards.push_back(r);
  }
  return rewards;
}

std::vector<double> run_reward_cmd(const RewardCmdOpts& o, const std::vector<RewardItem>& items) {
  if (items.empty()) return {};
  const std::string& cmd = o.command;
  FATHOM_CHECK(!cmd.empty(), "reward command is empty");
  FATHOM_CHECK(std::isfinite(o.timeout_s) && o.timeout_s > 0, "reward command `{}`: timeout must be positive, got {}",
               cmd, o.timeout_s);

  std::string input;  // one JSON object per line, every item
  for (size_t i = 0; i < items.size(); ++i) {
    const RewardItem& it = items[i];
    FATHOM_CHECK(it.extra.is_object(), "reward item {}: extra must be a JSON object, got {}", i, it.extra.type_name());
    json j = it.extra;
    j["prompt"] = it.prompt;
    j["completion"] = it.completion;
    if (it.answer.empty()) j.erase("answer");
    else j["answer"] = it.answer;
    j["index"] = i;
    input += j.dump(-1, ' ', false, json::error_handler_t::replace);
    input += '\n';
  }

  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout_s));
  auto timed_out = [&](Child& c, const std::string& err) {
    c.kill_group();
    fail("reward command `{}` ran past its timeout of {} s and was killed{}", cmd, o.timeout_s,
         stderr_tail(err));
  };

  SigpipeBlock sigpipe_blocked;
  Child c;
  spawn(cmd, c);
  std::string out, err;
  size_t written = 0;
  bool stopped_reading = false;  // it closed its stdin before taking all of the input
  const size_t out_cap = (size_t(16) << 20) + items.size() * 4096;

  while (c.out >= 0 || c.err >= 0) {
    pollfd fds[3];
    int n = 0;
    if (c.in >= 0) fds[n++] = {c.in, POLLOUT, 0};
    if (c.out >= 0) fds[n++] = {c.out, POLLIN, 0};
    if (c.err >= 0) fds[n++] = {c.err, POLLIN, 0};
    int timeout = ms_left(deadline);
    if (timeout == 0) timed_out(c, err);
    int r = poll(fds, static_cast<nfds_t>(n), timeout);
    if (r == -1 && errno == EINTR) continue;
    if (r == -1) fail("reward command `{}`: poll: {}", cmd, std::strerror(errno));
    for (int k = 0; k < n; ++k) {
      if (fds[k].revents == 0) continue;
      if (fds[k].fd == c.in) {
        while (written < input.size()) {
          ssize_t w = ::write(c.in, input.data() + written, std::min<size_t>(input.size() - written, 65536));
          if (w > 0) written += static_cast<size_t>(w);
          else if (w == -1 && errno == EINTR) continue;
          else break;
        }
        if (written == input.size() || (errno != EAGAIN && errno != EWOULDBLOCK)) {
          stopped_reading = written < input.size();
          Child::close_fd(c.in);  // EOF tells it that the batch is complete
        }
      } else if (fds[k].fd == c.out) {
        drain(c.out, out);
        if (out.size() > out_cap) fail("reward command `{}` printed more than {} bytes for {} items", cmd, out_cap, items.size());
      } else {
        drain(c.err, err);
        if (err.size() > 2 * kStderrKeep) err.erase(0, err.size() - kStderrKeep);
      }
    }
  }
  if (written < input.size()) stopped_reading = true;  // it closed stdout and stderr before reading it all
  Child::close_fd(c.in);

  // Both pipes are at EOF; wait for the exit without reaping, so the group id is still ours to
  // kill anything the command left running in the background, then reap.
  int status = 0;
  for (;;) {
    siginfo_t info{};
    int r = waitid(P_PID, static_cast<id_t>(c.pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (r == -1 && errno == EINTR) continue;
    if (r == -1) fail("reward command `{}`: waitid: {}", cmd, std::strerror(errno));
    if (info.si_pid == c.pid) break;
    if (ms_left(deadline) == 0) timed_out(c, err);
    poll(nullptr, 0, std::min(5, ms_left(deadline)));
  }
  c.kill_group();
  while (waitpid(c.pid, &status, 0) == -1 && errno == EINTR) continue;
  c.reaped = true;

  if (WIFSIGNALED(status))
    fail("reward command `{}` was killed by signal {} ({}){}", cmd, WTERMSIG(status), strsignal(WTERMSIG(status)),
         stderr_tail(err));
  if (WEXITSTATUS(status) != 0)
    fail("reward command `{}` exited with status {}{}{}", cmd, WEXITSTATUS(status),
         WEXITSTATUS(status) == 127 ? " (command not found?)" : "", stderr_tail(err));

  const std::vector<double> rewards = parse_reward_output(out, items.size(), cmd);
  if (rewards.size() < items.size())
    fail("reward command `{}` printed {} rewards for {} items{}{}", cmd, rewards.size(), items.size(),
         stopped_reading ? " (it stopped reading its input early)" : "", stderr_tail(err));
  return rewards;
}

}  // namespace fathom::train
