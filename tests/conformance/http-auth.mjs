// Node preload for the conformance suite's raw `http.request` scenarios (http-header-validation,
// http-custom-header-server-validation, tasks-request-headers): the kit's auth-header.mjs adds the
// Bearer key to fetch()/undici only, and those scenarios talk through node:http, so they would be
// refused with 401 before any header rule is checked. This adds `Authorization: Bearer $MCP_TOKEN`
// to every node:http request that carries none. Use: NODE_OPTIONS="--import <this file>".
import http from 'node:http';

const token = process.env.MCP_TOKEN;
if (token) {
  const original = http.request;
  http.request = function request(...args) {
    const opts = args.find((a) => a && typeof a === 'object' && !(a instanceof URL));
    if (opts) {
      opts.headers = opts.headers || {};
      const has = Object.keys(opts.headers).some((k) => k.toLowerCase() === 'authorization');
      if (!has) opts.headers.Authorization = `Bearer ${token}`;
    }
    return original.apply(this, args);
  };
}
