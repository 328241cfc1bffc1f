/**
 * A test reporter beside TAP (package.json's test script): at the end of the
 * run it names every suite and test that was skipped, and why, so a run
 * that silently skipped the Postgres or browser tests says so. README
 * ("Tests that skip") says what each needs. Lines are TAP comments.
 */
export default async function* skippedSummary(source) {
  const skipped = [];
  for await (const event of source) {
    if ((event.type === "test:pass" || event.type === "test:fail") && event.data.skip !== undefined) skipped.push(event.data);
  }
  const cwd = process.cwd() + "/";
  yield `# skipped: ${skipped.length === 0 ? "none" : `${skipped.length} (README "Tests that skip" says what they need)`}\n`;
  for (const t of skipped) {
    const file = (t.file ?? "").replace(cwd, "").replace(/^file:\/\//, "");
    yield `#   ${file}: ${t.name}${typeof t.skip === "string" ? ` (${t.skip})` : ""}\n`;
  }
}
