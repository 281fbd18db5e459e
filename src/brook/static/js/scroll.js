// Autoscroll follows the answer only while the reader is at the bottom; when they scroll
// up, a "Jump to latest" button appears.
const SLACK = 48; // pixels from the bottom that still count as "at the bottom"

export class Follower {
  constructor(scroller, button, onJump = () => {}) {
    this.scroller = scroller;
    this.button = button;
    this.following = true;
    scroller.addEventListener("scroll", () => {
      this.following = this.distance() <= SLACK;
      this.update();
    }, { passive: true });
    button.addEventListener("click", () => {
      this.toBottom();
      onJump();
    });
  }

  distance() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight;
  }

  update() {
    this.button.hidden = this.following || this.distance() <= SLACK;
  }

  /** After the content changed: keep to the bottom if the reader was there. */
  changed() {
    if (this.following) this.scroller.scrollTop = this.scroller.scrollHeight;
    this.update();
  }

  toBottom() {
    this.following = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.update();
  }
}
