import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

test("a robot account's token is shown once, with its expiry", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/${seed.Project}/robots`);
  await page.getByLabel("Name").fill("ci");
  await page.getByRole("button", { name: "Create", exact: true }).click();
  await expect(page.getByRole("status")).toContainText("Created the robot account ci");
  const row = page.locator('tr[data-robot="ci"]');
  await expect(row).toContainText("none live");
  await row.getByLabel("Valid for").selectOption({ label: "30 days" });
  await row.getByRole("button", { name: "Create token" }).click();
  const token = await page.getByTestId("new-token").textContent();
  expect(token).toMatch(/^sha256~/);
  await expect(page.getByText("it is shown once")).toBeVisible();
  // The token is the account's.
  const me = await page.request.get("/apis/user.openshift.io/v1/users/~", { headers: { Authorization: "Bearer " + token } });
  expect((await me.json()).metadata.name).toBe(`system:serviceaccount:${seed.Project}:ci`);
  // Listed with its expiry, colour-coded; never shown again.
  await page.goto(`/console/projects/${seed.Project}/robots`);
  await expect(page.getByTestId("new-token")).toHaveCount(0);
  expect(await page.content()).not.toContain(token!);
  await expect(row.locator("li.expiry-ok")).toHaveCount(1);
  await row.getByLabel("Valid for").selectOption({ label: "1 hour" });
  await row.getByRole("button", { name: "Create token" }).click();
  const short = await page.getByTestId("new-token").textContent();
  await page.goto(`/console/projects/${seed.Project}/robots`);
  await expect(row.locator("li.expiry-imminent")).toHaveCount(1);
  await checkA11y(page);
  await screenshot(page, "robots");

  // Revoke the short one: it stops working, the other goes on.
  page.once("dialog", (d) => d.accept());
  await row.locator("li.expiry-imminent").getByRole("button", { name: "Revoke" }).click();
  await expect(page.getByRole("status")).toContainText("Revoked a token of ci");
  await expect(row.locator("li.expiry-imminent")).toHaveCount(0);
  await expect(row.locator("li.expiry-ok")).toHaveCount(1);
  const gone = await page.request.get("/apis/user.openshift.io/v1/users/~", { headers: { Authorization: "Bearer " + short } });
  expect(gone.status()).toBe(401);
  const still = await page.request.get("/apis/user.openshift.io/v1/users/~", { headers: { Authorization: "Bearer " + token } });
  expect(still.status()).toBe(200);
});
