// Drag on a query photo to draw the item's box; the form then re-runs the match with it.
// Bound on the document because htmx replaces the result while it polls.
(function () {
  let drag = null;

  function relative(event, frame) {
    const rect = frame.getBoundingClientRect();
    return {
      x: Math.min(Math.max(event.clientX - rect.left, 0), rect.width),
      y: Math.min(Math.max(event.clientY - rect.top, 0), rect.height),
      rect: rect,
    };
  }

  document.addEventListener("mousedown", function (event) {
    const frame = event.target.closest(".photo-box.editable .frame");
    if (!frame) return;
    event.preventDefault();
    const start = relative(event, frame);
    drag = { frame: frame, start: start, box: frame.querySelector(".box.drawing") };
    drag.box.hidden = false;
    Object.assign(drag.box.style, { left: start.x + "px", top: start.y + "px", width: "0px", height: "0px" });
  });

  document.addEventListener("mousemove", function (event) {
    if (!drag) return;
    const now = relative(event, drag.frame);
    Object.assign(drag.box.style, {
      left: Math.min(now.x, drag.start.x) + "px",
      top: Math.min(now.y, drag.start.y) + "px",
      width: Math.abs(now.x - drag.start.x) + "px",
      height: Math.abs(now.y - drag.start.y) + "px",
    });
  });

  document.addEventListener("mouseup", function (event) {
    if (!drag) return;
    const now = relative(event, drag.frame);
    const figure = drag.frame.closest(".photo-box");
    const scaleX = Number(figure.dataset.width) / now.rect.width;
    const scaleY = Number(figure.dataset.height) / now.rect.height;
    const form = figure.querySelector(".box-form");
    const values = {
      x0: Math.min(now.x, drag.start.x) * scaleX,
      y0: Math.min(now.y, drag.start.y) * scaleY,
      x1: Math.max(now.x, drag.start.x) * scaleX,
      y1: Math.max(now.y, drag.start.y) * scaleY,
    };
    drag = null;
    if (!form || values.x1 - values.x0 < 8 || values.y1 - values.y0 < 8) return;
    for (const [name, value] of Object.entries(values)) form.elements[name].value = value.toFixed(1);
    form.hidden = false;
  });
})();
