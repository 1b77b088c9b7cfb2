(function () {
  const form = document.getElementById("launch-form");
  const share = document.getElementById("share");
  function target(urlpath) {
    const repo = document.getElementById("repo").value.trim();
    const ref = document.getElementById("ref").value.trim() || "HEAD";
    const labpath = document.getElementById("labpath").value.trim();
    let url = new URL("v2/git/" + encodeURIComponent(repo) + "/" + ref.split("/").map(encodeURIComponent).join("/"), window.location.href).href;
    if (urlpath) url += "?urlpath=" + encodeURIComponent(urlpath);
    else if (labpath) url += "?labpath=" + encodeURIComponent(labpath);
    return url;
  }
  form.addEventListener("input", () => { share.textContent = target(); });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    // the "Desktop" button opens /desktop in the server (data-urlpath)
    window.location.href = target(e.submitter ? e.submitter.dataset.urlpath : "");
  });
})();
