// Builds the web client into dist/: index.html and assets/ (app.js, app.css).
// Also bundles the browser tests into build/test/ so that node runs them.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

await rm("dist", { recursive: true, force: true });
await mkdir("dist/assets", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: process.env.PARLEY_WEB_DEBUG ? false : true,
  sourcemap: true,
  outfile: "dist/assets/app.js",
  logLevel: "warning",
});
await copyFile("style.css", "dist/assets/app.css");
await copyFile("index.html", "dist/index.html");

await rm("build", { recursive: true, force: true });
await build({
  entryPoints: ["test/browser.test.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  packages: "external",
  outdir: "build/test",
  outExtension: { ".js": ".mjs" },
  logLevel: "warning",
});
