// The server's access key, when it asks for one (TONEWIRE_API_KEYS).
//
// fetch and XHR send it as `Authorization: Bearer`; EventSource and WebSocket cannot set
// headers, so their URLs carry `?token=`. It is kept in sessionStorage: this tab only, gone
// when the tab closes. A 401 anywhere announces `tonewire:unauthorized`; main.js then asks.

const STORE = "tonewire-api-key";

export function apiKey() {
  try {
    return sessionStorage.getItem(STORE) || "";
  } catch {
    return ""; // storage disabled: the page still works on a server without keys
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(STORE, key);
    else sessionStorage.removeItem(STORE);
  } catch {
    /* storage disabled: the key lasts until reload */
  }
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** The URL with `token=` added when there is a key (same-origin http(s) or ws(s) URLs). */
export function withToken(url) {
  const key = apiKey();
  if (!key) return url;
  const u = new URL(url, location.href);
  u.searchParams.set("token", key);
  return u.origin === location.origin ? u.pathname + u.search : u.href;
}

export function announceUnauthorized() {
  window.dispatchEvent(new Event("tonewire:unauthorized"));
}
