// The Copy button next to a key shown once: copies the named field's value. Written here;
// without JavaScript the field is still selectable by hand.
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  button.addEventListener("click", function () {
    var field = document.getElementById(button.getAttribute("data-copy"));
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done); }
    else { document.execCommand("copy"); done(); }
  });
});
