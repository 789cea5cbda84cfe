import { expect, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

export interface Seed {
  URL: string; Host: string;
  AdminUser: string; AdminPassword: string;
  ViewerUser: string; ViewerPassword: string;
  Project: string;
  Pushes: string[]; Index: string; Referrer: string; Platforms: string[];
  ManyTags: number; LargestTags: string[]; SmallestTags: string[];
  Crane: string; DockerConfig: string; CAFile: string;
  Screenshots: string;
}

export const seed: Seed = JSON.parse(readFileSync(process.env.BERTH_SEED ?? "", "utf8"));

export async function login(page: Page, user = seed.AdminUser, password = seed.AdminPassword) {
  await page.goto("/console/login");
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("user")).toHaveText(user);
}

// checkA11y runs axe on the page: no serious or critical violation of
// WCAG 2 A and AA.
export async function checkA11y(page: Page) {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa"]).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join("; ")})`)).toEqual([]);
}

// screenshot saves the page as docs/console/NAME.png, for the README.
export async function screenshot(page: Page, name: string) {
  mkdirSync(seed.Screenshots, { recursive: true });
  // Generous: on a busy machine Chromium may take a while to settle fonts.
  await page.screenshot({ path: join(seed.Screenshots, name + ".png"), fullPage: false, timeout: 30_000 });
}
