// The page of a one-time login link posts its code at once.
const form = document.getElementById("link-form");
if (form) form.submit();
