// The upload page: terms first, then the file with upload progress, then validation progress.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var data = form.dataset;
  var dialog = document.getElementById("terms");
  var fileInput = document.getElementById("file");
  var panel = document.getElementById("progress-panel");
  var title = document.getElementById("progress-title");
  var bar = document.getElementById("progress");
  var text = document.getElementById("progress-text");
  var summary = document.getElementById("upload-error");
  var summaryMessage = document.getElementById("upload-error-message");
  var advice = document.getElementById("export-advice");
  var button = document.getElementById("upload-button");
  var adviceCodes = (data.adviceCodes || "").split(",");
  var POLL_MS = 1000;

  function showError(message, code) {
    summaryMessage.textContent = message;
    advice.hidden = adviceCodes.indexOf(code) < 0;
    summary.hidden = false;
    panel.hidden = true;
    button.disabled = false;
    document.getElementById("file-field").classList.add("field-error");
    fileInput.setAttribute("aria-invalid", "true");
    // As the server's pages do for a form with errors: the title says so first.
    if (document.title.indexOf(data.errorPrefix) !== 0) {
      document.title = data.errorPrefix + document.title;
    }
    summary.focus();
  }

  function setProgress(heading, percent, words) {
    title.textContent = heading;
    if (percent === null) { bar.removeAttribute("value"); } else { bar.value = percent; }
    text.textContent = words;
  }

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    return String(Date.now()) + "-" + String(Math.random()).slice(2);
  }

  function poll(uploadId) {
    var request = new XMLHttpRequest();
    request.open("GET", data.resultUrl + encodeURIComponent(uploadId) + "/status");
    request.responseType = "json";
    request.onload = function () {
      var upload = request.response;
      if (request.status === 401) { showError(data.sessionEnded, ""); return; }
      if (request.status !== 200 || !upload) { window.setTimeout(function () { poll(uploadId); }, POLL_MS); return; }
      if (upload.final) {
        setProgress(data.validating, 100, upload.message);
        window.location.assign(data.resultUrl + encodeURIComponent(uploadId));
        return;
      }
      var percent = upload.rows_total > 0 ? Math.round(100 * upload.rows_processed / upload.rows_total) : null;
      setProgress(data.validating, percent, upload.message);
      window.setTimeout(function () { poll(uploadId); }, POLL_MS);
    };
    request.onerror = function () { window.setTimeout(function () { poll(uploadId); }, POLL_MS * 2); };
    request.send();
  }

  function send() {
    var file = fileInput.files[0];
    var body = new FormData();
    var policy = form.querySelector("input[name=policy]:checked");
    body.append("terms_accepted", "true");
    if (policy) { body.append("policy", policy.value); }
    body.append("file_name", file.name);
    body.append("file", file, file.name);
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader(data.csrfHeader, data.csrf);
    request.setRequestHeader("Idempotency-Key", newKey());
    request.responseType = "json";
    request.upload.onprogress = function (event) {
      if (event.lengthComputable) {
        var percent = Math.round(100 * event.loaded / event.total);
        setProgress(data.sending, percent, percent + "%");
      }
    };
    request.onload = function () {
      var answer = request.response || {};
      if (request.status === 200 || request.status === 202) {
        setProgress(data.validating, null, answer.message || "");
        poll(answer.upload_id);
      } else if (request.status === 401) {
        showError(data.sessionEnded, "");
      } else {
        showError(answer.message || data.failed, answer.code || "");
      }
    };
    request.onerror = function () { showError(data.failed, ""); };
    summary.hidden = true;
    panel.hidden = false;
    button.disabled = true;
    setProgress(data.sending, 0, "0%");
    title.focus();
    request.send(body);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!fileInput.files || fileInput.files.length === 0) { showError(data.noFile, ""); return; }
    summary.hidden = true;
    dialog.showModal();
    document.getElementById("terms-accept").focus();
  });
  document.getElementById("terms-accept").addEventListener("click", function () {
    dialog.close();
    send();
  });
  document.getElementById("terms-cancel").addEventListener("click", function () {
    dialog.close();
    button.focus();
  });
}());
