// CommonJS entry of the volley-client package: `require("volley-client")`.
// The implementation is volley.js, which exports itself when loaded as CommonJS.
"use strict";
module.exports = require("./volley.js");
