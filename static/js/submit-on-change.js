// <select data-submit-on-change>: submit its form when the choice changes (no inline handlers:
// the Content Security Policy allows scripts from this site only).
document.addEventListener("change", (event) => {
  const field = event.target.closest("[data-submit-on-change]");
  if (field && field.form) field.form.submit();
});
