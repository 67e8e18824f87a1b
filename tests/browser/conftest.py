"""The browser tests share test_admin_browser's Chromium fixture."""

from tests.browser.test_admin_browser import playwright_api  # noqa: F401  # a fixture
