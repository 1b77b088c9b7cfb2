// Follows the /build event stream, shows the log and opens the server when it is ready.
// Its values come from the page's data- attributes (the portal checked the targets: relative
// paths inside the server); no inline script passes them.
(function () {
  const cfg = document.getElementById("launch").dataset;
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  const labels = {
    waiting: "Waiting", fetching: "Fetching the repository", building: "Building the environment",
    pushing: "Saving the image", built: "Environment ready", launching: "Starting the server",
    ready: "Server ready, opening...", failed: "Failed",
  };
  function filePath(path) {
    return path.split("/").map(encodeURIComponent).join("/");
  }
  function serverUrl(ev) {
    let url = ev.url.replace(/\/?$/, "/");
    if (cfg.urlpath) url += cfg.urlpath;
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
