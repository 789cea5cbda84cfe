import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

test("an admin adds and removes a member", async ({ page }) => {
  await login(page);
  await page.goto(`/console/projects/${seed.Project}/members`);
  await expect(page.locator(`tr[data-member="User:${seed.ViewerUser}:registry-viewer"]`)).toBeVisible();
  await page.getByLabel("Kind").selectOption("User");
  await page.getByLabel("Name").fill("carol");
  await page.getByLabel("Role").selectOption("registry-editor");
  await page.getByRole("button", { name: "Add" }).click();
  await expect(page.getByRole("status")).toContainText("Granted registry-editor to User carol");
  const carol = page.locator('tr[data-member="User:carol:registry-editor"]');
  await expect(carol).toBeVisible();
  await checkA11y(page);
  await screenshot(page, "members");

  // Carol may now push: the API says so.
  const who = await page.request.post("/oauth/token", { form: { grant_type: "password", username: "carol", password: "carol-Pa55" } });
  const token = (await who.json()).access_token;
  const review = await page.request.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
    headers: { Authorization: "Bearer " + token },
    data: { spec: { resourceAttributes: { namespace: seed.Project, verb: "update", group: "image.openshift.io", resource: "imagestreams", subresource: "layers" } } },
  });
  expect((await review.json()).status.allowed).toBe(true);

  page.once("dialog", (d) => d.accept());
  await carol.getByRole("button", { name: "Remove" }).click();
  await expect(page.getByRole("status")).toContainText("Removed User carol");
  await expect(carol).toHaveCount(0);
});
