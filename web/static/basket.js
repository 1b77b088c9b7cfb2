/* The basket of the dataset search page: datasets chosen across searches for one
   "Analyse together" launch of a template. Kept in localStorage (PIDs, titles and the templates
   each card offered), so it survives paging and new searches; only templates that fit every
   chosen dataset are offered. The launch itself is an ordinary link: the portal checks access. */
(function () {
  "use strict";
  const KEY = "panbinder-basket";
  const MAX = 20;
  const panel = document.getElementById("basket");
  if (!panel) return;
  const list = document.getElementById("basket-items");
  const select = document.getElementById("basket-template");
  const launch = document.getElementById("basket-launch");
  const note = document.getElementById("basket-note");

  function load() {
    try {
      const items = JSON.parse(window.localStorage.getItem(KEY) || "[]");
      return Array.isArray(items) ? items.filter((i) => i && typeof i.pid === "string") : [];
    } catch (e) {
      return [];
    }
  }
  function save(items) {
    window.localStorage.setItem(KEY, JSON.stringify(items));
  }
  function templatesOf(button) {
    const card = button.closest("li.card");
    return Array.from(card.querySelectorAll("a.analyse")).map((a) => ({
      name: a.dataset.template, title: a.dataset.title, notebook: a.dataset.notebook || "",
    }));
  }
  function common(items) {
    if (!items.length) return [];
    return (items[0].templates || []).filter((t) =>
      items.every((i) => (i.templates || []).some((o) => o.name === t.name)));
  }
  function segment(value) {
    return encodeURIComponent(value);
  }
  function launchUrl(items, template) {
    let url = panel.dataset.base + "v2/template/" + segment(template.name) + "/" + items.map((i) => segment(i.pid)).join("/");
    if (template.notebook) url += "?labpath=" + encodeURIComponent(template.notebook).replace(/%2F/g, "/");
    return url;
  }
  function render() {
    const items = load();
    panel.hidden = items.length === 0;
    document.getElementById("basket-count").textContent = String(items.length);
    list.replaceChildren(...items.map((item) => {
      const li = document.createElement("li");
      li.append(document.createTextNode(item.title + " "));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "basket-remove";
      remove.dataset.pid = item.pid;
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove " + item.title + " from the basket");
      li.append(remove);
      return li;
    }));
    const shared = common(items);
    const chosen = select.value;
    select.replaceChildren(...shared.map((t) => new Option(t.title, t.name, false, t.name === chosen)));
    const template = shared.find((t) => t.name === select.value);
    if (template) {
      launch.href = launchUrl(items, template);
      launch.classList.remove("disabled");
      launch.removeAttribute("aria-disabled");
      note.textContent = "";
    } else {
      launch.removeAttribute("href");
      launch.classList.add("disabled");
      launch.setAttribute("aria-disabled", "true");
      note.textContent = items.length ? "No template fits every dataset in the basket; remove one." : "";
    }
    document.querySelectorAll("button.basket-add").forEach((b) => {
      const on = items.some((i) => i.pid === b.dataset.pid);
      b.setAttribute("aria-pressed", on ? "true" : "false");
      b.textContent = on ? "In the basket" : "Add to basket";
      b.hidden = false;
    });
  }
  document.addEventListener("click", (e) => {
    const add = e.target.closest("button.basket-add");
    const remove = e.target.closest("button.basket-remove");
    let items = load();
    if (add) {
      if (items.some((i) => i.pid === add.dataset.pid)) {
        items = items.filter((i) => i.pid !== add.dataset.pid);
      } else if (items.length >= MAX) {
        note.textContent = "A launch mounts at most " + MAX + " datasets.";
        return;
      } else {
        items.push({ pid: add.dataset.pid, title: add.dataset.title, templates: templatesOf(add) });
      }
    } else if (remove) {
      items = items.filter((i) => i.pid !== remove.dataset.pid);
    } else if (e.target.id === "basket-clear") {
      items = [];
    } else {
      return;
    }
    save(items);
    render();
    if (!add) {  // the pressed button is gone: keep the keyboard in the basket or the search
      const next = panel.hidden ? document.getElementById("q") : list.querySelector("button") || select;
      if (next) next.focus();
    }
  });
  select.addEventListener("change", render);
  render();
})();
