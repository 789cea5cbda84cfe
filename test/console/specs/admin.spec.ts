import { test, expect } from "@playwright/test";
import { login, checkA11y, screenshot } from "./helpers";

test("an administrator sees the Config, toggles read-only, dry-runs GC and pruning", async ({ page }) => {
  await login(page);
  await page.goto("/console/admin");
  await expect(page.getByTestId("read-only")).toHaveText("no");
  await expect(page.getByTestId("storage")).toContainText("{");
  await checkA11y(page);
  await screenshot(page, "admin");

  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Make the registry read-only" }).click();
  await expect(page.getByTestId("read-only")).toContainText("yes");
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Make the registry writable" }).click();
  await expect(page.getByTestId("read-only")).toHaveText("no");

  await page.locator("#gc-heading ~ form").getByRole("button", { name: "Dry run" }).click();
  await expect(page.getByTestId("gc-report")).toContainText("Dry run:");
  await expect(page.getByRole("button", { name: "Confirm: collect garbage" })).toBeVisible();
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Confirm: collect garbage" }).click();
  await expect(page.getByTestId("gc-report")).toContainText("Done:");

  await page.locator("#prune-heading ~ form").getByRole("button", { name: "Dry run" }).click();
  await expect(page.getByTestId("prune-report")).toContainText("Dry run:");
  await expect(page.getByRole("button", { name: "Confirm: prune" })).toBeVisible();
});
