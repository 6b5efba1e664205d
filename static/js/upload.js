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
