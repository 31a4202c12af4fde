// Entry point: two views switched by the URL hash (#live, #analyze, #analyze/<job id>), so
// the back button, bookmarks and a reload all land where the user was.

import { AnalyzeView } from "./analyze.js";
import { getJson } from "./api.js";
import { apiKey, setApiKey } from "./auth.js";
import { byId } from "./dom.js";
import { LiveView } from "./live.js";

const live = new LiveView();
const analyze = new AnalyzeView();

function route() {
  const [name, jobId] = location.hash.replace(/^#/, "").split("/");
  const view = name === "analyze" ? "analyze" : "live";
  for (const v of ["live", "analyze"]) {
    byId(`view-${v}`).hidden = v !== view;
    const tab = byId(`tab-${v}`);
    if (v === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
  if (view === "analyze" && jobId && jobId !== analyze.jobId) analyze.follow(decodeURIComponent(jobId));
}

// A 401 means the server wants an access key (a wrong one is asked for again). Once one is
// given, the page reloads so every stream and socket reopens with it.
window.addEventListener("tonewire:unauthorized", () => {
  const panel = byId("key-panel");
  if (!panel.hidden) return;
  if (apiKey()) setApiKey("");
  panel.hidden = false;
  byId("key-input").focus();
});
byId("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = byId("key-input").value.trim();
  if (!key) return;
  setApiKey(key);
  location.reload();
});

window.addEventListener("hashchange", route);
route();
document.body.dataset.ready = "true";
// Ask at once whether this server wants a key, rather than at the first click.
getJson("/api/jobs?limit=1")
  .then(() => { document.body.dataset.access = "granted"; })
  .catch((err) => { document.body.dataset.access = err.status === 401 ? "needed" : "unknown"; });
export { analyze, live };
