import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

const many = () => `/console/projects/${seed.Project}/streams/many`;

test("1,000 tags: sorted by size over all of them, paged with a total", async ({ page }) => {
  await login(page);
  await page.goto(many());
  await expect(page.getByTestId("total")).toHaveText(String(seed.ManyTags));
  await expect(page.locator("table.tags tbody tr")).toHaveCount(50);
  await checkA11y(page);

  // Size, descending: the three largest of the thousand, not of a page.
  const size = page.getByRole("columnheader", { name: "Size" }).getByRole("link");
  await size.click();
  await expect(page.getByRole("columnheader", { name: "Size" })).toHaveAttribute("aria-sort", "ascending");
  await size.click();
  await expect(page.getByRole("columnheader", { name: /Size/ })).toHaveAttribute("aria-sort", "descending");
  const firstTags = await page.locator("table.tags tbody tr").evaluateAll((rows) => rows.slice(0, 3).map((r) => r.getAttribute("data-tag")));
  expect(firstTags).toEqual(seed.LargestTags);

  // The last page, by size: the smallest last.
  await page.getByRole("link", { name: "Last", exact: true }).click();
  await expect(page.getByTestId("range")).toContainText(`951–1000 of ${seed.ManyTags}`);
  const lastTags = await page.locator("table.tags tbody tr").evaluateAll((rows) => rows.slice(-3).map((r) => r.getAttribute("data-tag")));
  expect(lastTags).toEqual(seed.SmallestTags);

  // Name, descending; then a filter keeps the order and counts anew.
  await page.goto(many() + "?sort=name&order=desc");
  await expect(page.locator("table.tags tbody tr").first()).toHaveAttribute("data-tag", "t0999");
  await page.getByLabel("Filter by name").fill("t09");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page.getByTestId("total")).toHaveText("100");
  await page.getByRole("link", { name: "Next" }).click();
  await expect(page.getByTestId("range")).toContainText("51–100 of 100");
  await expect(page.locator("table.tags tbody tr").first()).toHaveAttribute("data-tag", "t0949");
});

test("a stream's tags show digest, size, platforms and who pushed", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/${seed.Project}/streams/multi`);
  const latest = page.locator('tr[data-tag="latest"]');
  await expect(latest).toContainText(seed.Index.slice(7, 19));
  await expect(latest).toContainText("linux/amd64");
  await expect(latest).toContainText("linux/arm64/v8");
  await expect(latest).toContainText(seed.Platforms[0].slice(7, 19));
  await expect(latest).toContainText(seed.AdminUser);
  await checkA11y(page);
  await page.goto(`/console/projects/${seed.Project}/streams/app`);
  await screenshot(page, "stream");
});

test("copy the pull command and the login line", async ({ page, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await login(page);
  await page.goto(`/console/projects/${seed.Project}/streams/app`);
  const row = page.locator('tr[data-tag="v1"]');
  await row.getByText("Pull", { exact: true }).click();
  await row.getByRole("button", { name: `Copy: podman pull ${seed.Host}/${seed.Project}/app:v1` }).click();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`podman pull ${seed.Host}/${seed.Project}/app:v1`);
  const byDigest = row.locator("li").filter({ hasText: "skopeo by digest" });
  await byDigest.getByRole("button").click();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toMatch(
    new RegExp(`^skopeo copy docker://${seed.Host}/${seed.Project}/app@sha256:[0-9a-f]{64} oci:app:v1$`));
  await page.getByRole("button", { name: "Copy" }).first().click();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`podman login -u ${seed.AdminUser} ${seed.Host}`);
});
