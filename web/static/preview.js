// Dataset card: show the HDF5 tree of a file and a thumbnail of a dataset picked from it.
(function () {
  const cfg = window.PANBINDER;
  const select = document.getElementById("preview-file");
  const treeEl = document.getElementById("tree");
  const thumb = document.getElementById("thumb");
  const enc = encodeURIComponent;
  function render(node, depth, out, file) {
    const pad = "  ".repeat(depth);
    const shape = node.shape ? " " + JSON.stringify(node.shape) + " " + (node.dtype || "") : "";
    const flag = node.missing ? " (source missing)" : "";
    const line = document.createElement("div");
    line.textContent = pad + (node.name || "/") + shape + flag;
    if (node.kind === "dataset" && node.shape && node.shape.length >= 1 && !node.missing) {
      line.className = "drawable";
      line.onclick = () => {
        thumb.src = cfg.base + "api/preview/thumbnail/" + cfg.pid + "?file=" + enc(file) + "&path=" + enc(node.path);
      };
    }
    out.appendChild(line);
    (node.children || []).forEach((c) => render(c, depth + 1, out, file));
  }
  function load() {
    const file = select.value;
    treeEl.textContent = "loading...";
    fetch(cfg.base + "api/preview/tree/" + cfg.pid + "?file=" + enc(file))
      .then((r) => r.json())
      .then((data) => { treeEl.textContent = ""; if (data.message) { treeEl.textContent = data.message; } else { render(data, 0, treeEl, file); } });
  }
  select.addEventListener("change", load);
  load();
})();
