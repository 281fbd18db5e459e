// Copy text to the clipboard, with a fallback where the async Clipboard API is missing
// (pages served over plain HTTP from another host than localhost).
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission refused: try the old way below.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "clipboard-helper";
  document.body.append(area);
  const focused = document.activeElement;
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  if (focused instanceof HTMLElement) focused.focus();
  return ok;
}

/** Shows "Copied" on a copy button for a moment. */
export function flashCopied(button, ok) {
  const label = button.querySelector(".label");
  if (!button.dataset.label) {
    button.dataset.label = label ? label.textContent : "";
    button.dataset.ariaLabel = button.getAttribute("aria-label") || "";
  }
  const text = ok ? "Copied" : "Copy failed";
  if (label) label.textContent = text;
  if (button.dataset.ariaLabel) button.setAttribute("aria-label", text);
  button.classList.add(ok ? "copied" : "copy-failed");
  clearTimeout(Number(button.dataset.timer || 0));
  button.dataset.timer = String(setTimeout(() => {
    if (label) label.textContent = button.dataset.label;
    if (button.dataset.ariaLabel) button.setAttribute("aria-label", button.dataset.ariaLabel);
    button.classList.remove("copied", "copy-failed");
  }, 2000));
}
