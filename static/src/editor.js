// The script editor of the support page: CodeMirror 6 with Python highlighting and line numbers.
// Bundled by esbuild (`npm run build`) into static/vendor/editor.js as one IIFE file that sets
// window.FiretimeEditor, because the CSP allows scripts from this site only (no CDN, no inline).
import { EditorView, basicSetup } from "codemirror";
import { python } from "@codemirror/lang-python";
import { HighlightStyle, indentUnit, syntaxHighlighting } from "@codemirror/language";
import { tags } from "@lezer/highlight";

// Token colours that keep WCAG AA contrast (4.5:1) on the white editor; CodeMirror's default
// style has lighter ones. basicSetup's default style only applies where no other style does.
const readable = HighlightStyle.define([
  { tag: [tags.keyword, tags.controlKeyword, tags.operatorKeyword, tags.definitionKeyword, tags.moduleKeyword],
    color: "#6b21a8" },
  { tag: [tags.string, tags.special(tags.string), tags.regexp], color: "#166534" },
  { tag: [tags.comment, tags.lineComment, tags.blockComment], color: "#4b5563", fontStyle: "italic" },
  { tag: [tags.number, tags.bool, tags.null, tags.atom], color: "#9a3412" },
  { tag: [tags.function(tags.variableName), tags.function(tags.propertyName), tags.definition(tags.variableName)],
    color: "#1e40af" },
  { tag: [tags.className, tags.definition(tags.className), tags.typeName], color: "#854d0e" },
  { tag: [tags.self, tags.special(tags.variableName), tags.standard(tags.variableName)], color: "#9f1239" },
  { tag: [tags.meta, tags.annotation, tags.escape], color: "#374151" },
  { tag: tags.invalid, color: "#b91c1c" },
]);

// Put an editor in place of the textarea; the textarea stays in the form (hidden) and gets the
// editor's text on every change and before the form is sent, so the form posts as without JS.
export function mount(textarea) {
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      python(),
      syntaxHighlighting(readable),
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
