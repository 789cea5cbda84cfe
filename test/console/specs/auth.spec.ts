import { test, expect } from "@playwright/test";
import { seed, login, checkA11y, screenshot } from "./helpers";

test("sign in with a password, then sign out revokes the session", async ({ page, context }) => {
  await page.goto("/console/projects");
  await expect(page).toHaveURL(/\/console\/login\?then=/);
  await checkA11y(page);
  await screenshot(page, "login");

  await page.getByLabel("User name").fill(seed.AdminUser);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("Sign-in failed");

  await login(page);
  await expect(page).toHaveURL(/\/console\/projects$/);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "berth_console");
  expect(session?.httpOnly).toBe(true);
  expect(session?.secure).toBe(true);
  expect(session?.sameSite).toBe("Strict");
  expect(session?.path).toBe("/console/");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/console\/login$/);
  // The token behind the cookie no longer works anywhere.
  const token = session!.value.slice(2);
  const me = await page.request.get("/apis/user.openshift.io/v1/users/~", { headers: { Authorization: "Bearer " + token } });
  expect(me.status()).toBe(401);
  await page.goto("/console/projects");
  await expect(page).toHaveURL(/\/console\/login/);
});

test("sign in with a token", async ({ page }) => {
  const resp = await page.request.post("/oauth/token", {
    form: { grant_type: "password", username: seed.ViewerUser, password: seed.ViewerPassword },
  });
  const token = (await resp.json()).access_token as string;
  await page.goto("/console/login");
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("user")).toHaveText(seed.ViewerUser);
});

test("the login form refuses a post from another site", async ({ page }) => {
  await page.goto("/console/login");
  const resp = await page.request.post("/console/login", {
    form: { username: seed.AdminUser, password: seed.AdminPassword },
    headers: { Origin: "https://evil.example" },
  });
  expect(resp.status()).toBe(403);
});
