// Follows the /build event stream, shows the log and opens the server when it is ready.
// Its values come from the page's data- attributes (the portal checked the targets: relative
// paths inside the server); no inline script passes them.
(function () {
  const cfg = document.getElementById("launch").dataset;
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  // The build's notices (builder/buildpacks/settings.py NOTICE_PREFIX): what the build decided for
  // the reader (packages inferred from imports, kernel names, Python version), listed apart.
  const notices = document.getElementById("notices");
  const NOTICE = "panbinder notice: ";
  const labels = {
    waiting: "Waiting", fetching: "Fetching the repository", building: "Building the environment",
    pushing: "Saving the image", built: "Environment ready", launching: "Starting the server",
    ready: "Server ready, opening...", failed: "Failed",
  };
  function filePath(path) {
    return path.split("/").map(encodeURIComponent).join("/");
  }
  // "Desktop": open /desktop (noVNC) in the server instead of the target the link named
  const desktop = document.getElementById("open-desktop");
  let wantDesktop = Boolean(desktop && desktop.getAttribute("aria-pressed") === "true");
  if (desktop) {
    desktop.addEventListener("click", function () {
      wantDesktop = !wantDesktop;
      desktop.setAttribute("aria-pressed", String(wantDesktop));
    });
  }
  function serverUrl(ev) {
    let url = ev.url.replace(/\/?$/, "/");
    if (wantDesktop) url += "desktop/";
    else if (cfg.urlpath) url += cfg.urlpath;
    else if (cfg.labpath) url += "lab/tree/" + filePath(cfg.labpath);
    else if (cfg.filepath) url += "tree/" + filePath(cfg.filepath);
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(ev.token);
  }
  const source = new EventSource(cfg.stream);
  source.onmessage = function (msg) {
    const ev = JSON.parse(msg.data);
    status.textContent = labels[ev.phase] || ev.phase;
    status.className = "phase-" + ev.phase;
    if (ev.message) {
      log.textContent += ev.message;
      log.scrollTop = log.scrollHeight;
      for (const line of ev.message.split("\n")) {
        if (!line.startsWith(NOTICE)) continue;
        const item = document.createElement("li");
        item.textContent = line.slice(NOTICE.length);
        notices.appendChild(item);
        notices.hidden = false;
      }
    }
    if (ev.phase === "failed") {
      status.textContent = "Failed: " + (ev.message || "unknown error");
      if (ev.build_log_url) {
        const link = document.createElement("a");
        link.id = "build-log-link";
        link.href = ev.build_log_url;
        link.textContent = "full build log";
        status.appendChild(document.createTextNode(" "));
        status.appendChild(link);
      }
      source.close();
    } else if (ev.phase === "ready") {
      source.close();
      window.location.href = serverUrl(ev);
    }
  };
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) return;
    status.textContent = "Lost the connection to the build; reload the page to follow it again.";
    status.className = "phase-failed";
    source.close();
  };
})();
