console.log('embedpool');
