// Dataset card: the HDF5 tree of a file, and a thumbnail of a numeric dataset picked from it.
// The dataset's PID and the base URL come from data- attributes of #preview (no inline script).
(function () {
  const cfg = document.getElementById("preview").dataset;
  const select = document.getElementById("preview-file");
  const treeEl = document.getElementById("tree");
  const thumb = document.getElementById("thumb");
  const note = document.createElement("p");
  thumb.after(note);
  const enc = encodeURIComponent;
  const NUMERIC = /^(u?int|float|complex|bool)/;
  function drawable(node) {
    return node.kind === "dataset" && !node.missing && NUMERIC.test(node.dtype || "") &&
      (node.shape || []).some((n) => n > 1);
  }
  function show(file, node) {
    note.textContent = node.path + " " + JSON.stringify(node.shape) + " " + node.dtype;
    const url = cfg.base + "api/preview/thumbnail/" + enc(cfg.pid) + "?file=" + enc(file) + "&path=" + enc(node.path);
    fetch(url).then(async (r) => {
      if (r.ok) {
        thumb.src = URL.createObjectURL(await r.blob());
      } else {
        thumb.removeAttribute("src");
        note.textContent = (await r.json()).message;
      }
    });
  }
  function render(node, depth, file, found) {
    const line = document.createElement("div");
    const shape = node.shape ? " " + JSON.stringify(node.shape) + " " + (node.dtype || "") : "";
    const value = node.value !== undefined ? " = " + JSON.stringify(node.value) : "";
    const flag = node.missing ? " (source file missing)" : "";
    line.textContent = "  ".repeat(depth) + (node.name || "/") + shape + value + flag;
    if (drawable(node)) {
      line.className = "drawable";
      line.onclick = () => show(file, node);
      if (!found.first || (node.shape.length >= 2 && found.first.shape.length < 2)) found.first = node;
    }
    treeEl.appendChild(line);
    (node.children || []).forEach((c) => render(c, depth + 1, file, found));
  }
  function load() {
    const file = select.value;
    treeEl.textContent = "loading...";
    fetch(cfg.base + "api/preview/tree/" + enc(cfg.pid) + "?file=" + enc(file))
      .then((r) => r.json())
      .then((data) => {
        treeEl.textContent = "";
        if (data.message) { treeEl.textContent = data.message; return; }
        const found = {};
        render(data, 0, file, found);
        if (found.first) show(file, found.first);
      });
  }
  select.addEventListener("change", load);
  load();
})();
