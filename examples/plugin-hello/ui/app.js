document.getElementById("greet").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = new FormData(ev.target).get("name");
  const out = document.getElementById("out");
  const r = await fetch("fn/greet", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name }),
  });
  const body = await r.json();
  out.textContent = r.ok ? `${body.message} (${body.count} so far)` : (body.error || r.statusText);
});
