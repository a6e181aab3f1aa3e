// The admin-token dialog: asked for when an admin call answers 401/403. One question at a
// time; concurrent askers share the answer.

let pending = null;

/** Resolves to the token typed in, or null when the person cancels. */
export function askToken({ refused = false } = {}) {
  if (pending) return pending;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  const cancel = document.getElementById("token-cancel");
  error.hidden = !refused;
  input.value = "";
  pending = new Promise((resolve) => {
    const finish = (value) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      pending = null;
      resolve(value);
    };
    const onSubmit = (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (token) finish(token);
    };
    const onCancel = (e) => {
      e.preventDefault();
      finish(null);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
  return pending;
}
