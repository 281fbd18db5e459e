// Small stroke icons, built as DOM nodes (no markup strings, nothing inline to allow).
const SVG = "http://www.w3.org/2000/svg";

const PATHS = {
  plus: ["M12 5v14", "M5 12h14"],
  menu: ["M4 6h16", "M4 12h16", "M4 18h16"],
  close: ["M6 6l12 12", "M18 6L6 18"],
  pencil: ["M4 20h4L19 9l-4-4L4 16v4z", "M13.5 6.5l4 4"],
  trash: ["M4 7h16", "M9 7V4h6v3", "M6 7l1 13h10l1-13", "M10 11v6", "M14 11v6"],
  copy: ["M9 9h11v11H9z", "M5 15H4V4h11v1"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  refresh: ["M20 11a8 8 0 1 0-2.3 5.7", "M20 5v6h-6"],
  stop: ["M7 7h10v10H7z"],
  send: ["M12 19V5", "M6 11l6-6 6 6"],
  down: ["M12 5v14", "M6 13l6 6 6-6"],
  info: ["M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18z", "M12 11v6", "M12 7.5v.5"],
};

export function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  for (const d of PATHS[name] || []) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

// A button with an icon and a visible label, or (labelHidden) an icon-only button whose
// label is its accessible name and tooltip. Each kind is built once and then cloned: a
// long conversation has hundreds of them.
const prototypes = new Map();

export function iconButton(name, label, { className = "", labelHidden = false } = {}) {
  const key = JSON.stringify([name, label, className, labelHidden]);
  let prototype = prototypes.get(key);
  if (!prototype) {
    prototype = document.createElement("button");
    prototype.type = "button";
    if (className) prototype.className = className;
    prototype.append(icon(name));
    if (labelHidden) {
      prototype.setAttribute("aria-label", label);
      prototype.title = label;
    } else {
      const span = document.createElement("span");
      span.className = "label";
      span.textContent = label;
      prototype.append(span);
    }
    prototypes.set(key, prototype);
  }
  return prototype.cloneNode(true);
}
