// Starts Swagger UI on /docs. A file of its own, not an inline script, so the page's
// Content-Security-Policy can say script-src 'self'. The page names the OpenAPI document
// in data-openapi-url.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis],
    // No request to the public validator: the docs work offline and leak nothing.
    validatorUrl: null,
  });
})();
