// Build the anywidget ESM bundle: js/src/index.tsx -> oremda_lab/widget/static/editor.{js,css}.
import * as esbuild from "esbuild";

const watch = process.argv.includes("--watch");
const options = {
  entryPoints: { editor: "js/src/index.tsx" },
  outdir: "oremda_lab/widget/static",
  bundle: true,
  format: "esm",
  minify: !watch,
  sourcemap: false,
  target: ["es2020"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": JSON.stringify(watch ? "development" : "production") },
  logLevel: "info",
  legalComments: "linked",
};
if (watch) await (await esbuild.context(options)).watch();
else await esbuild.build(options);
