// fetch() with the server's error shape: every 4xx/5xx body is {code, message}. Callers get
// an ApiError carrying the code, which errors.js turns into words for people.

import { announceUnauthorized, authHeaders } from "./auth.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

export async function request(method, path, { json, form, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json", ...authHeaders() } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (form !== undefined) {
    init.body = form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "NETWORK", "the server could not be reached");
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) announceUnauthorized();
    const code = body && typeof body.code === "string" ? body.code : `HTTP_${response.status}`;
    const message = body && typeof body.message === "string" ? body.message : response.statusText;
    throw new ApiError(response.status, code, message);
  }
  return body;
}

export const getJson = (path, opts) => request("GET", path, opts);
export const postJson = (path, json, opts) => request("POST", path, { ...opts, json });

/**
 * POST a multipart form with upload progress (fetch can't report it): a large file on a slow
 * link otherwise looks stuck. onProgress gets 0..1.
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Accept", "application/json");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "NETWORK", "the server could not be reached"));
    xhr.onload = () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body);
        return;
      }
      if (xhr.status === 401) announceUnauthorized();
      const code = body && typeof body.code === "string" ? body.code : `HTTP_${xhr.status}`;
      const message = body && typeof body.message === "string" ? body.message : xhr.statusText;
      reject(new ApiError(xhr.status, code, message));
    };
    xhr.send(form);
  });
}
