// CTest fixture: builds the tiny full-vocabulary model the server tests share.
import { makeModel } from './helpers.mjs';

console.log(`model ready in ${makeModel()}`);
