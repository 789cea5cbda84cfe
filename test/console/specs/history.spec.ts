import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

// test/e2e/console_test.go pulls team/app:v1 with podman after this spec:
// it must get the first push's image.
test("revert a tag to an earlier entry of its history", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/${seed.Project}/streams/app/tags/v1`);
  const digests = await page.getByTestId("entry-digest").allTextContents();
  expect(digests).toEqual([...seed.Pushes].reverse().map((d) => d.slice(7, 19)));
  await expect(page.locator('tr[data-entry="0"]')).toContainText(seed.AdminUser);
  await checkA11y(page);
  await screenshot(page, "tag-history");

  // A date filter: nothing tomorrow.
  const tomorrow = new Date(Date.now() + 86400_000).toISOString().slice(0, 10);
  await page.getByLabel("From").fill(tomorrow);
  await page.getByRole("button", { name: "Show" }).click();
  await expect(page.getByText("No entry in these dates.")).toBeVisible();
  await page.goto(`/console/projects/${seed.Project}/streams/app/tags/v1`);

  page.once("dialog", (d) => d.accept());
  await page.locator('tr[data-entry="2"]').getByRole("button", { name: "Revert to this" }).click();
  await expect(page.getByRole("status")).toContainText("Reverted app:v1 to " + seed.Pushes[0]);
  const current = page.locator('tr[data-entry="0"]');
  await expect(current).toContainText(seed.Pushes[0].slice(7, 19));
  await expect(current).toContainText("Rollback");
  await expect(current).toContainText("current");
  await expect(page.getByTestId("entry-digest")).toHaveCount(4);
});

test("delete a tag", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/sandbox/streams/scratch`);
  page.once("dialog", (d) => d.accept());
  await page.locator('tr[data-tag="doomed"]').getByRole("button", { name: "Delete" }).click();
  await expect(page.getByRole("status")).toContainText("Deleted the tag scratch:doomed");
  await expect(page.getByTestId("total")).toHaveText("0");
});
