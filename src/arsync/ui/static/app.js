// Copy buttons: <button data-copy="#element-id"> or data-copy-text="...".
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy], [data-copy-text]");
  if (!button) return;
  const source = button.dataset.copy ? document.querySelector(button.dataset.copy) : null;
  const text = button.dataset.copyText ?? (source ? source.textContent.trim() : "");
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API unavailable (plain http on another host): select the text instead.
    if (source) {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
});

// htmx requests carry the session's CSRF token.
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
});

// Forms that ask first: <form data-confirm="Question?">. Inline handlers would be blocked by the
// Content-Security-Policy (script-src 'self').
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// Controls that submit their form when changed: <select data-submit-on-change>.
document.addEventListener("change", (event) => {
  const control = event.target.closest("[data-submit-on-change]");
  if (control && control.form) control.form.submit();
});

// The invoice form: add and remove lines, and keep a running total. The total is a guide only;
// the server computes the invoice's amounts exactly.
function invoiceTotal(form) {
  let total = 0;
  for (const row of form.querySelectorAll("tr[data-line]")) {
    const quantity = parseFloat(row.querySelector("[name$='_quantity']").value) || 0;
    const price = parseFloat(row.querySelector("[name$='_unit_price']").value) || 0;
    total += quantity * price;
  }
  const shown = form.querySelector("#invoice-total");
  const currency = form.querySelector(shown.dataset.currencyField).value;
  shown.textContent = `${total.toLocaleString("en-US", { maximumFractionDigits: 6 })} ${currency}`;
}

document.addEventListener("click", (event) => {
  const form = event.target.closest("form.invoice-form");
  if (!form) return;
  const body = form.querySelector("#invoice-lines tbody");
  if (event.target.closest("[data-add-line]")) {
    const rows = body.querySelectorAll("tr[data-line]");
    const next = Math.max(-1, ...[...rows].map((r) => parseInt(r.querySelector("input").name.match(/^line(\d+)_/)[1], 10))) + 1;
    const row = rows[rows.length - 1].cloneNode(true);
    row.querySelectorAll(".field-error").forEach((e) => e.remove());
    for (const input of row.querySelectorAll("input")) {
      input.name = input.name.replace(/^line\d+_/, `line${next}_`);
      input.setAttribute("aria-label", input.getAttribute("aria-label").replace(/^Line \d+/, `Line ${rows.length + 1}`));
      input.removeAttribute("aria-invalid");
      input.value = "";
    }
    body.appendChild(row);
    row.querySelector("input").focus();
  } else if (event.target.closest("[data-remove-line]")) {
    const rows = body.querySelectorAll("tr[data-line]");
    if (rows.length > 1) event.target.closest("tr").remove();
    else rows[0].querySelectorAll("input").forEach((input) => { input.value = ""; });
  } else {
    return;
  }
  invoiceTotal(form);
});

document.addEventListener("input", (event) => {
  const form = event.target.closest("form.invoice-form");
  if (form) invoiceTotal(form);
});
document.addEventListener("change", (event) => {
  const form = event.target.closest("form.invoice-form");
  if (form && event.target.id === "currency") invoiceTotal(form);
});
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form.invoice-form");
  if (form) invoiceTotal(form);
});

// Print buttons: <button data-print>.
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) window.print();
});
