// Words for people instead of error codes. Codes come from tonewire/errors.py, the HTTP
// adapters (transports/*) and the browser itself; anything unknown falls back to a calm
// generic sentence, with the server's own message kept as a detail.

const FRIENDLY = {
  UNSUPPORTED_FORMAT: "This file isn't audio we can read — try another.",
  DECODE_ERROR: "This file seems damaged or cut short, so it can't be read. Try another copy.",
  EMPTY_AUDIO: "This file has no sound in it.",
  TOO_LONG: "This recording is longer than this server accepts.",
  NOT_FOUND: "That couldn't be found.",
  UPLOAD_TOO_LARGE: "This file is too big for this server.",
  UNSUPPORTED_MEDIA_TYPE: "The upload didn't arrive as expected. Try again.",
  INVALID_UPLOAD: "The upload didn't arrive whole. Try again.",
  MISSING_FILE: "Choose a file first.",
  JOB_NOT_FOUND: "That analysis no longer exists.",
  JOB_CANCELLED: "The analysis was cancelled.",
  WORKER_LOST: "The analysis stopped unexpectedly on the server. Try again.",
  INTERNAL_ERROR: "Something went wrong on the server. Try again.",
  INVALID_REQUEST: "The server didn't accept that request.",
  SESSION_LIMIT: "The server is busy with other live sessions. Try again in a little while.",
  SESSION_NOT_FOUND: "This live session no longer exists.",
  VAD_UNAVAILABLE: "The speech detector isn't available on this server.",
  NETWORK: "The server can't be reached. Check your connection, then try again.",
  HTTP_429: "The server is busy. Try again in a little while.",
  // Links (URL jobs).
  INVALID_URL: "That link isn't one this server can analyse. Use a YouTube video link or a direct link to an audio or video file.",
  URL_NOT_ALLOWED: "This server isn't allowed to fetch from that address.",
  URL_JOBS_DISABLED: "This server doesn't analyse links. Download the file, then choose it above.",
  VIDEO_UNAVAILABLE: "That video or file can't be reached: it may be private, removed or restricted.",
  EXTRACTION_ERROR: "That page has no audio this server can download.",
  DOWNLOAD_TOO_LARGE: "That recording is too big for this server to download.",
  DOWNLOAD_TIMEOUT: "Downloading took too long. Try again later, or download the file and choose it above.",
  BODY_TOO_LARGE: "That link is too long.",
  // The browser's own errors around the microphone.
  NotAllowedError: "Microphone access is blocked. Allow it for this site in your browser, then try again.",
  NotFoundError: "No microphone was found.",
  NotReadableError: "The microphone is in use by another app, or can't be opened.",
  INSECURE: "Listening needs a secure page: open this server over https, or on localhost.",
  NO_AUDIO_WORKLET: "This browser can't capture audio here. Try a current Chrome, Edge, Firefox or Safari.",
  // Ingest socket close codes (tonewire/sessions/model.py).
  WS_4004: "This live session has ended.",
  WS_4009: "This session is already receiving audio from another tab or app.",
  WS_1009: "The browser sent more audio at once than the server accepts.",
};

// What to say when a link can't be analysed because the route doesn't take links (yet).
const LINKS_UNAVAILABLE = "Analysing from a link isn't available on this server yet. Download the file, then choose it above.";

// A server without link support answers a JSON body with these (the route takes uploads only).
const NO_LINK_ROUTE = new Set(["UNSUPPORTED_MEDIA_TYPE", "METHOD_NOT_ALLOWED", "HTTP_404", "HTTP_405", "HTTP_415"]);

export function friendly(err, { about } = {}) {
  const code = err && (err.code || err.name);
  if (about === "url" && NO_LINK_ROUTE.has(code)) {
    return { text: LINKS_UNAVAILABLE, detail: "" };
  }
  if (about === "url" && code === "INVALID_REQUEST") {
    return { text: "That link doesn't look right. Check it, then try again.", detail: err.message || "" };
  }
  const text = FRIENDLY[code] || (about === "url"
    ? "That link couldn't be analysed."
    : "Something went wrong. Try again.");
  const detail = FRIENDLY[code] ? "" : (err && err.message) || "";
  return { text, detail };
}

/** Show {text, detail} in a notice element (role=alert), or hide it with null. */
export function showNotice(node, notice, { tone = "error" } = {}) {
  node.replaceChildren();
  if (!notice) {
    node.hidden = true;
    return;
  }
  node.dataset.tone = tone;
  const p = document.createElement("p");
  p.textContent = notice.text;
  node.append(p);
  if (notice.detail) {
    const d = document.createElement("p");
    d.className = "detail";
    d.textContent = notice.detail;
    node.append(d);
  }
  node.hidden = false;
}
