// Entry point: two views switched by the URL hash (#live, #analyze, #analyze/<job id>), so
// the back button, bookmarks and a reload all land where the user was.

import { AnalyzeView } from "./analyze.js";
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

window.addEventListener("hashchange", route);
route();
document.body.dataset.ready = "true";
export { analyze, live };
