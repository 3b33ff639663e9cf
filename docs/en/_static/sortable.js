// Sort the tables inside a `sortable` container by a column: click its
// header (again to reverse). Numbers sort as numbers ("1,189,632",
// "0.416-0.475" by their first value); "-" and text stay after them.
document.addEventListener('DOMContentLoaded', function () {
  function key(cell) {
    var text = cell.textContent.trim();
    var number = parseFloat(text.replace(/,/g, ''));
    return isNaN(number) ? [1, text.toLowerCase()] : [0, number];
  }
  document.querySelectorAll('.sortable table').forEach(function (table) {
    var headers = table.querySelectorAll('thead th');
    headers.forEach(function (header, column) {
      header.addEventListener('click', function () {
        var down = header.getAttribute('aria-sort') !== 'descending';
        headers.forEach(function (h) { h.removeAttribute('aria-sort'); });
        header.setAttribute('aria-sort', down ? 'descending' : 'ascending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ka = key(a.cells[column]), kb = key(b.cells[column]);
          if (ka[0] !== kb[0]) return ka[0] - kb[0];  // text always last
          var order = ka[1] < kb[1] ? -1 : ka[1] > kb[1] ? 1 : 0;
          return down ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
});
