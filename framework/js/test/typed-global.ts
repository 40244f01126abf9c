// A page that loads volley.js with a <script> tag uses the global `Volley`
// (checked by `tsc -p test` with typed.ts).
/// <reference path="../volley.d.ts" />

const pageClient = new Volley.Client("/volley", { transport: "polling" });
pageClient.onState((s: Volley.StateInfo) => console.log(s.state, Volley.version));
