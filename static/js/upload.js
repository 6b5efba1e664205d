// Drag-and-drop and previews for the upload form. The file input stays the single source of truth.
(function () {
  const input = document.getElementById("photos");
  const zone = document.getElementById("dropzone");
  const previews = document.getElementById("previews");
  if (!input || !zone) return;

  function showPreviews() {
    previews.innerHTML = "";
    for (const file of input.files) {
      const tag = document.createElement("span");
      tag.className = "pill";
      tag.textContent = file.name;
      if (!file.type.startsWith("image/") || file.type.includes("heic") || file.type.includes("heif")) {
        previews.appendChild(tag);
        continue;
      }
      const img = document.createElement("img");
      img.alt = file.name;
      img.src = URL.createObjectURL(file);
      // A file the browser cannot decode shows its name; the server says what is wrong with it.
      img.addEventListener("error", () => img.replaceWith(tag));
      previews.appendChild(img);
    }
  }
  input.addEventListener("change", showPreviews);
  ["dragenter", "dragover"].forEach((name) =>
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) =>
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (event) => {
    const merged = new DataTransfer();
    for (const file of input.files) merged.items.add(file);
    for (const file of event.dataTransfer.files) merged.items.add(file);
    input.files = merged.files;
    showPreviews();
  });
})();

// "+ another attribute" copies the first attribute row (empty), up to the server's limit.
(function () {
  const rows = document.getElementById("attribute-rows");
  const add = document.getElementById("add-attribute");
  if (!rows || !add) return;
  const max = parseInt(rows.dataset.max || "8", 10);
  add.addEventListener("click", () => {
    const count = rows.querySelectorAll(".attribute-row").length;
    if (count >= max) return;
    const row = rows.querySelector(".attribute-row").cloneNode(true);
    row.querySelectorAll("input, select").forEach((field) => { field.value = ""; });
    rows.appendChild(row);
    row.querySelector("select").focus();
    if (count + 1 >= max) add.hidden = true;
  });
})();
