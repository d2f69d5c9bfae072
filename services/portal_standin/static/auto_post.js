// Posts the hand-off form at once, as the portal's backend does; without script, its button.
document.getElementById("hand-off").submit();
