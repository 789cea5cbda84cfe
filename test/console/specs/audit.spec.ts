import { test, expect } from "@playwright/test";
import { readFileSync } from "node:fs";
import { seed, login, checkA11y, screenshot } from "./helpers";

test("the audit log shows pushes, filters, and exports CSV", async ({ page }) => {
  await login(page);
  await page.goto("/console/audit");
  const table = page.getByTestId("audit");
  await expect(table.locator("tbody tr")).toHaveCount(50);
  // dave tagged team/app once (crane tag: the manifest put again under
  // a new tag), and signed in for it.
  await page.getByLabel("User").fill("dave");
  await page.getByRole("button", { name: "Show" }).click();
  await expect(table.locator("tbody tr").filter({ hasText: "by-dave" })).toContainText("tag");
  await page.getByLabel("Action").selectOption("tag");
  await page.getByRole("button", { name: "Show" }).click();
  await expect(page.getByTestId("audit-total")).toHaveText("1");
  await checkA11y(page);
  await screenshot(page, "audit");
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Export CSV" }).click()]);
  const csv = readFileSync((await download.path())!, "utf8").trim().split("\n");
  expect(csv[0]).toBe("time,actor,action,project,resource,name,digest,detail");
  expect(csv.length).toBe(2);
  expect(csv[1]).toContain(",dave,tag,team,tags,team/app:by-dave,");
  // Narrowed to a project, on the cluster-wide page and on the project's.
  await page.goto("/console/audit?actor=dave&action=tag&project=sandbox");
  await expect(page.getByTestId("audit-total")).toHaveText("0");
  await page.getByLabel("Project", { exact: true }).fill(seed.Project);
  await page.getByRole("button", { name: "Show" }).click();
  await expect(page.getByTestId("audit-total")).toHaveText("1");
  await page.goto(`/console/projects/${seed.Project}/audit?actor=dave`);
  await expect(page.getByTestId("audit")).toContainText(`${seed.Project}/app:by-dave`);
  await page.goto(`/console/projects/sandbox/audit?actor=dave`);
  await expect(page.getByTestId("audit-total")).toHaveText("0");
});
