document.getElementById("app")?.append("edgesim");
