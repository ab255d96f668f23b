// The script editor of the support page: CodeMirror 6 with Python highlighting and line numbers.
// Bundled by esbuild (`npm run build`) into static/vendor/editor.js as one IIFE file that sets
// window.FiretimeEditor, because the CSP allows scripts from this site only (no CDN, no inline).
import { EditorView, basicSetup } from "codemirror";
import { python } from "@codemirror/lang-python";
import { indentUnit } from "@codemirror/language";

// Put an editor in place of the textarea; the textarea stays in the form (hidden) and gets the
// editor's text on every change and before the form is sent, so the form posts as without JS.
export function mount(textarea) {
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      python(),
      indentUnit.of("    "),
      EditorView.lineWrapping,
      EditorView.contentAttributes.of({ "aria-label": textarea.getAttribute("aria-label") || "Script",
                                        "aria-describedby": textarea.getAttribute("aria-describedby") || "" }),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) textarea.value = update.state.doc.toString();
      }),
    ],
  });
  textarea.insertAdjacentElement("afterend", view.dom);
  textarea.hidden = true;
  if (textarea.form) {
    textarea.form.addEventListener("submit", () => { textarea.value = view.state.doc.toString(); });
  }
  // A click on the field's label focuses the editor, as it focused the textarea.
  const label = textarea.id && document.querySelector(`label[for="${textarea.id}"]`);
  if (label) label.addEventListener("click", (event) => { event.preventDefault(); view.focus(); });
  return view;
}
