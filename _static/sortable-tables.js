// Tables the book marks sortable (class "sortable"): a click on a column's header sorts the rows by it, a second
// click reverses the order. Numbers sort as numbers (thousands separators ignored), empty cells last.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach((table) => {
    const body = table.tBodies[0];
    if (!body) return;
    table.querySelectorAll("thead tr:last-child th").forEach((th, col) => {
      th.style.cursor = "pointer";
      th.title = "sort by this column";
      th.addEventListener("click", () => {
        const up = th.dataset.order !== "up";
        table.querySelectorAll("thead th").forEach((h) => delete h.dataset.order);
        th.dataset.order = up ? "up" : "down";
        const key = (row) => {
          const text = (row.children[col] || {}).textContent.trim();
          const num = Number(text.replace(/,/g, ""));
          return text === "" ? null : Number.isNaN(num) ? text : num;
        };
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          if (x === null || y === null) return (x === null) - (y === null);
          const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return up ? c : -c;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  });
});
