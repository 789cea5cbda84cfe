import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

test("projects list what they hold, unique and shared", async ({ page }) => {
  await login(page);
  const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: seed.Project, exact: true }) });
  await expect(row.getByRole("cell").nth(1)).toHaveText("3"); // app, multi, many
  // app: v1 and by-dave; multi: two platforms and latest; many.
  await expect(row.getByRole("cell").nth(2)).toHaveText(String(2 + 3 + seed.ManyTags));
  await expect(row).toContainText("unique");
  await checkA11y(page);
  await screenshot(page, "projects");
  // Sorted by the server: by tags, descending, team first.
  const tags = page.getByRole("columnheader", { name: "Tags" }).getByRole("link");
  await tags.click();
  await expect(page.getByRole("columnheader", { name: "Tags" })).toHaveAttribute("aria-sort", "ascending");
  await tags.click();
  await expect(page.getByRole("columnheader", { name: "Tags" })).toHaveAttribute("aria-sort", "descending");
  await expect(page).toHaveURL(/sort=tags&order=desc|order=desc&sort=tags/);
  await expect(page.locator("tbody tr").first()).toContainText(seed.Project);
});

test("one box searches projects, streams and tags", async ({ page }) => {
  await login(page);
  await page.getByLabel("Search projects, image streams and tags").fill("mult");
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page.getByTestId("found-streams")).toContainText(seed.Project + "/multi");
  await expect(page.getByTestId("found-tags")).toContainText(seed.Project + "/multi:latest");
  await page.getByLabel("Search projects, image streams and tags").fill("tea");
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page.getByTestId("found-projects")).toContainText(seed.Project);
  await checkA11y(page);
});

test("a project lists its streams", async ({ page }) => {
  await login(page);
  await page.getByRole("link", { name: seed.Project, exact: true }).click();
  for (const name of ["app", "many", "multi"]) {
    await expect(page.getByRole("link", { name, exact: true })).toBeVisible();
  }
  await page.getByLabel("Filter by name").fill("man");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page.locator("tbody tr")).toHaveCount(1);
  await expect(page.getByTestId("total")).toHaveText("1");
  await checkA11y(page);
  await page.goto(`/console/projects/${seed.Project}`);
  await screenshot(page, "project");
});
