import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

test("an administrator sees the Config, toggles read-only, dry-runs GC and pruning", async ({ page }) => {
  await login(page);
  await page.goto("/console/admin");
  await expect(page.getByTestId("read-only")).toHaveText("no");
  await expect(page.getByTestId("storage")).toContainText("{");
  await expect(page.getByTestId("routes")).toHaveText("none");
  // The default route, turned on through the API, shows with its host.
  const grant = await page.request.post("/oauth/token", { form: { grant_type: "password", username: seed.AdminUser, password: seed.AdminPassword } });
  const auth = { Authorization: "Bearer " + (await grant.json()).access_token, "Content-Type": "application/merge-patch+json" };
  const config = "/apis/imageregistry.operator.openshift.io/v1/configs/cluster";
  expect((await page.request.patch(config, { headers: auth, data: '{"spec":{"defaultRoute":true}}' })).status()).toBe(200);
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId("routes")).toContainText("default-route", { timeout: 1000 });
  }).toPass({ timeout: 15_000 });
  expect((await page.request.patch(config, { headers: auth, data: '{"spec":{"defaultRoute":false}}' })).status()).toBe(200);
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
