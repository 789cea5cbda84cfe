import { defineConfig } from "@playwright/test";
import { readFileSync } from "node:fs";

// Run by test/e2e/console_test.go, which starts berth serve, seeds it and
// names the seed file in BERTH_SEED. Chromium is Debian's (a browser
// download does not work here): BERTH_CHROMIUM, /usr/bin/chromium by
// default.
const seed = JSON.parse(readFileSync(process.env.BERTH_SEED ?? "", "utf8"));

export default defineConfig({
  testDir: "./specs",
  timeout: 60_000,
  expect: { timeout: 10_000 },
  workers: 2,
  retries: 0,
  reporter: [["list"]],
  outputDir: process.env.BERTH_PW_OUTPUT ?? "test-results",
  use: {
    baseURL: seed.URL,
    // The registry's own CA signed its certificate; the browser is not
    // told of it, and this is a loopback test server.
    ignoreHTTPSErrors: true,
    viewport: { width: 1400, height: 900 },
    launchOptions: {
      executablePath: process.env.BERTH_CHROMIUM ?? "/usr/bin/chromium",
      args: ["--no-sandbox"],
    },
    screenshot: "only-on-failure",
    trace: "off",
  },
  // The administration spec makes the registry read-only for a moment:
  // it runs after the others, which push and change tags.
  projects: [
    { name: "pages", testIgnore: /admin\.spec\.ts/ },
    { name: "administration", testMatch: /admin\.spec\.ts/, dependencies: ["pages"] },
  ],
});
