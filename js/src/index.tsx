/** anywidget entry: `render` mounts the editor into the output cell. */
import { createRoot } from "react-dom/client";
import "@xyflow/react/dist/style.css";
import "./editor.css";
import { Editor } from "./Editor";
import type { Model } from "./model";

function render({ model, el }: { model: Model; el: HTMLElement }) {
  const root = createRoot(el);
  root.render(<Editor model={model} />);
  return () => root.unmount();
}

export default { render };
