// The gateway's REST API as the page uses it: JSON in and out, errors turned into
// `ApiError` from the contract's `{"error": {"code", "message"}}`, and admin calls that ask
// for the bearer token when the gateway wants one.

import { askToken } from "./token.js";

const TOKEN_KEY = "instaface.adminToken";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET/PUT/… `path`; resolves to the parsed JSON body (null for 204), throws `ApiError`. */
export async function api(path, { method = "GET", body, token, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: "no-store" });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", "The gateway is not answering");
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      if (res.ok) throw new ApiError(res.status, "bad_response", `${method} ${path} did not answer JSON`);
    }
  }
  if (!res.ok) {
    const err = data && data.error;
    const message = (err && err.message) || `${method} ${path} failed with HTTP ${res.status}`;
    throw new ApiError(res.status, (err && err.code) || `http_${res.status}`, message);
  }
  return data;
}

/**
 * An admin call: sends the token kept in sessionStorage; on 401/403 asks for one (a small
 * dialog), keeps it and tries again. Resolves to null when the person cancels.
 */
export async function adminApi(path, options = {}) {
  let token = sessionStorage.getItem(TOKEN_KEY) || undefined;
  for (;;) {
    try {
      return { data: await api(path, { ...options, token }) };
    } catch (e) {
      if (!(e instanceof ApiError) || (e.status !== 401 && e.status !== 403)) throw e;
      const refused = Boolean(token);
      if (refused) sessionStorage.removeItem(TOKEN_KEY);
      token = await askToken({ refused });
      if (!token) return null;
      sessionStorage.setItem(TOKEN_KEY, token);
    }
  }
}
