// ES module entry of the volley-client package:
//   import { Client } from "volley-client";        (Node, bundlers)
//   import { Client } from "/js/volley.mjs";       (a browser, next to volley.js)
// The implementation is volley.js. Node and bundlers load it as CommonJS and hand over
// its module.exports as the default export; a browser runs it as a module, where it
// sets the global `Volley` instead.
import * as loaded from "./volley.js";

const Volley = loaded.default || globalThis.Volley;

export const { Client, encode, decode, encodeBatch, splitBatch, version } = Volley;
export default Volley;
