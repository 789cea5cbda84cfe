import { test, expect } from "@playwright/test";
import { seed, login } from "./helpers";

test("a viewer sees no write action, and a forged request is refused", async ({ page }) => {
  await login(page, seed.ViewerUser, seed.ViewerPassword);
  await page.goto(`/console/projects/${seed.Project}/streams/app`);
  await expect(page.locator('tr[data-tag="v1"]')).toBeVisible();
  await expect(page.getByRole("button", { name: "Delete" })).toHaveCount(0);
  await expect(page.getByRole("link", { name: "Members" })).toHaveCount(0);
  await page.goto(`/console/projects/${seed.Project}/streams/app/tags/v1`);
  await expect(page.getByRole("button", { name: /Revert/ })).toHaveCount(0);
  await expect(page.getByRole("button", { name: /Delete/ })).toHaveCount(0);

  // The viewer's own CSRF token, on a form the page never offered: the
  // server's authorizer refuses it.
  const csrf = await page.locator('input[name="_csrf"]').first().inputValue();
  const del = await page.request.post(`/console/projects/${seed.Project}/streams/app/tags/v1/delete`, { form: { _csrf: csrf } });
  expect(del.status()).toBe(403);
  expect(await del.text()).toContain("cannot delete");
  const add = await page.request.post(`/console/projects/${seed.Project}/members/add`,
    { form: { _csrf: csrf, kind: "User", name: seed.ViewerUser, role: "admin" } });
  expect(add.status()).toBe(403);
  // Without the token, or from another site, nothing is even tried.
  const noToken = await page.request.post(`/console/projects/${seed.Project}/streams/app/tags/v1/delete`, { form: {} });
  expect(noToken.status()).toBe(403);
  expect(await noToken.text()).toContain("CSRF");
  const crossSite = await page.request.post(`/console/projects/${seed.Project}/streams/app/tags/v1/delete`,
    { form: { _csrf: csrf }, headers: { Origin: "https://evil.example" } });
  expect(crossSite.status()).toBe(403);
  expect(await crossSite.text()).toContain("another site");
  // Administration is the API's to refuse, too.
  await page.goto("/console/admin");
  await expect(page.getByTestId("error")).toContainText("forbidden");
});
